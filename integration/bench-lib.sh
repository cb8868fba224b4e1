# Set-up shared by the registry benchmarks (bench-registry.sh,
# bench-requests.sh), sourced from the project root: a release build of
# stowage, a work directory removed on exit, a Ceph RGW started in it, and
# helpers to start registries on free ports.
#   bench_setup NAME   sets $stowage, $work, $rgw, pids=(); starts RGW and
#                      exports its STOWAGE_S3_TEST_* and BENCH_S3_SECRET
#   free_port          a free TCP port on 127.0.0.1
#   wait_up HOST:PORT  until /v2/ answers (200, or 401 with auth)

bench_setup() {
  integration/servers/install.sh >/dev/null
  cargo build --release -p stowage-cli
  stowage=$(realpath "${CARGO_TARGET_DIR:-target}/release/stowage")
  work=$(mktemp -d "/tmp/stowage-$1.XXXXXX")
  rgw="$work/rgw"
  pids=()
  trap bench_cleanup EXIT
  STOWAGE_RGW_PORT=${STOWAGE_RGW_PORT:-27680} STOWAGE_RGW_MON_PORT=${STOWAGE_RGW_MON_PORT:-23500} \
    STOWAGE_RGW_MON_V1_PORT=${STOWAGE_RGW_MON_V1_PORT:-26989} STOWAGE_OIDC_PORT=${STOWAGE_OIDC_PORT:-18280} \
    integration/servers/rgw-up.sh "$rgw" >"$work/rgw-up.log" 2>&1 || { cat "$work/rgw-up.log"; exit 1; }
  set -a; . "$rgw/env"; set +a
  export BENCH_S3_SECRET=$STOWAGE_S3_TEST_SECRET_KEY
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  integration/servers/rgw-down.sh "$rgw" >/dev/null 2>&1 || true
  rm -rf "$work"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_up() {
  for _ in $(seq 100); do
    case "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/v2/" || true)" in 200|401) return 0;; esac
    sleep 0.1
  done
  echo "registry at $1 did not start" >&2; exit 1
}
