#!/usr/bin/env bash
# Stop the Garage server started by garage-up.sh BASE_DIR and delete BASE_DIR.
# Safe to run twice, or after a failed garage-up.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 BASE_DIR" >&2; exit 2; }
[ -d "$1" ] || { echo "garage-down: $1 does not exist, nothing to do"; exit 0; }
BASE=$(cd "$1" && pwd)

# Only a process whose command line names this server's garage.toml is stopped.
stop_pidfiles "$BASE/garage.toml" "$BASE/garage.pid"
remove_base "$BASE" .stowage-garage
echo "garage-down: stopped and removed $BASE"
