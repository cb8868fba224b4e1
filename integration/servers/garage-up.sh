#!/usr/bin/env bash
# Start a throwaway single-node Garage (S3 only, no STS) on 127.0.0.1 with a
# fixed test key and the bucket stowage-test; all state lives in BASE_DIR.
#
#   garage-up.sh BASE_DIR      then: source BASE_DIR/env; later: garage-down.sh BASE_DIR
#
# Binary: $GARAGE_BIN, else $STOWAGE_TOOLS_DIR/bin/garage (/opt/stowage-ci), else
# garage on PATH. Ports (env): STOWAGE_GARAGE_PORT (S3, 23900),
# STOWAGE_GARAGE_RPC_PORT (23901), STOWAGE_GARAGE_ADMIN_PORT (23903).
# STOWAGE_SERVER_WAIT (60) bounds each wait.
# BASE_DIR/env appears only once the server passed check-s3.py.
set -Eeuo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 BASE_DIR" >&2; exit 2; }
S3_PORT=${STOWAGE_GARAGE_PORT:-23900}
RPC_PORT=${STOWAGE_GARAGE_RPC_PORT:-23901}
ADMIN_PORT=${STOWAGE_GARAGE_ADMIN_PORT:-23903}
WAIT=${STOWAGE_SERVER_WAIT:-60}
PY=${PYTHON:-python3}
ENDPOINT=http://127.0.0.1:$S3_PORT
BUCKET=stowage-test
# Garage key ids are GK + 24 hex digits, secrets 64 hex digits.
KEY_ID=GK0123456789abcdef01234567
SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

TOOLS=${STOWAGE_TOOLS_DIR:-/opt/stowage-ci}
if [ -n "${GARAGE_BIN:-}" ]; then G=$GARAGE_BIN
elif [ -x "$TOOLS/bin/garage" ]; then G=$TOOLS/bin/garage
elif G=$(command -v garage); then :
else echo "garage-up: no garage binary; run integration/servers/install.sh" >&2; exit 1
fi

require_free_ports "$S3_PORT" "$RPC_PORT" "$ADMIN_PORT"
prepare_base "$1" .stowage-garage
mkdir -p "$BASE"/{meta,data}
CONF=$BASE/garage.toml

# On any failure: show the log, stop garage, keep BASE for inspection.
fail() {
  trap - ERR
  [ "$BASHPID" = $$ ] || exit 1  # in a subshell: let the main shell report it
  echo "garage-up: FAILED: $1" >&2
  tail_logs "$BASE/garage.log"
  stop_pidfiles "$CONF" "$BASE/garage.pid"
  echo "garage-up: server stopped; state kept in $BASE (garage-down.sh removes it)" >&2
  exit 1
}
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR
gcli() { timeout 30 "$G" -c "$CONF" "$@"; }

echo "garage-up: starting $G in $BASE"
# s3_region is the region garage names in its answers; the env file says the same.
cat >"$CONF" <<EOF
metadata_dir = "$BASE/meta"
data_dir = "$BASE/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(openssl rand -hex 32)"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
admin_token = "$(openssl rand -hex 32)"
EOF

RUST_LOG=garage=info nohup "$G" -c "$CONF" server </dev/null >"$BASE/garage.log" 2>&1 &
echo $! >"$BASE/garage.pid"
wait_for --pid $! "garage" "$WAIT" gcli status || fail "garage did not answer"
step "server up"

# A one-node layout, the test key, and the bucket it owns.
NODE=$(gcli node id -q | cut -d@ -f1)
gcli layout assign -z dc1 -c 1G "$NODE" >/dev/null
gcli layout apply --version 1 >/dev/null
gcli key import --yes -n stowage-test "$KEY_ID" "$SECRET" >/dev/null
gcli key allow --create-bucket stowage-test >/dev/null
gcli bucket create "$BUCKET" >/dev/null
gcli bucket allow --read --write --owner "$BUCKET" --key stowage-test >/dev/null
# Anonymous requests get 403 once the S3 API serves with the layout applied.
s3_ready() { [ "$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$ENDPOINT/")" = 403 ]; }
wait_for "garage S3 API" "$WAIT" s3_ready || fail "S3 API did not answer on $ENDPOINT"
step "layout, key, bucket"

write_env "$BASE/env.partial" \
  STOWAGE_S3_TEST_ENDPOINT="$ENDPOINT" \
  STOWAGE_S3_TEST_ACCESS_KEY="$KEY_ID" \
  STOWAGE_S3_TEST_SECRET_KEY="$SECRET" \
  STOWAGE_S3_TEST_BUCKET="$BUCKET" \
  STOWAGE_S3_TEST_REGION=us-east-1 \
  STOWAGE_S3_TEST_SERVER=garage
(source "$BASE/env.partial" && "$PY" "$HERE/check-s3.py") || fail "smoke check failed"
mv "$BASE/env.partial" "$BASE/env"
step "smoke check"

trap - ERR
echo "garage-up: ready at $ENDPOINT (pid $(cat "$BASE/garage.pid")); env: $BASE/env"
