#!/usr/bin/env bash
# Stop the Azurite started by azurite-up.sh BASE_DIR and delete BASE_DIR.
# Safe to run twice, or after a failed azurite-up.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 BASE_DIR" >&2; exit 2; }
[ -d "$1" ] || { echo "azurite-down: $1 does not exist, nothing to do"; exit 0; }
BASE=$(cd "$1" && pwd)

# Only a process whose command line names this server's data directory is stopped.
stop_pidfiles "$BASE/data" "$BASE/azurite.pid"
remove_base "$BASE" .stowage-azurite
echo "azurite-down: stopped and removed $BASE"
