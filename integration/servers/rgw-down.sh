#!/usr/bin/env bash
# Stop the Ceph cluster + radosgw started by rgw-up.sh BASE_DIR and delete BASE_DIR.
# Safe to run twice, or after a failed rgw-up.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 BASE_DIR" >&2; exit 2; }
[ -d "$1" ] || { echo "rgw-down: $1 does not exist, nothing to do"; exit 0; }
BASE=$(cd "$1" && pwd)

stop_pidfiles "$BASE/oidc" "$BASE/run/oidc.pid"
stop_ceph "$BASE"
remove_base "$BASE" .stowage-rgw
echo "rgw-down: stopped and removed $BASE"
