#!/usr/bin/env bash
# Request rates of registry lookups (manifest by tag and by digest, a small
# blob, the tag list): `stowage serve` (release build) against Debian's
# docker-registry (distribution 2.8), both on local disk and both on S3
# against a Ceph RGW this script starts, measured with wrk in interleaved
# rounds (integration/registry/bench_requests.py). With --auth both
# registries check basic auth against the same bcrypt htpasswd file.
#
#   integration/bench-requests.sh [--rounds 5] [--duration 5] [--auth]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=5 duration=5 auth=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2;;
    --duration) duration=$2; shift 2;;
    --auth) auth=1; shift;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
command -v wrk >/dev/null || { sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y wrk; }
. integration/bench-lib.sh
STOWAGE_RGW_PORT=${STOWAGE_RGW_PORT:-27780} bench_setup bench-requests

python3 integration/registry/make_oci_image.py "$work/image" --small --tag bench >/dev/null
creds=() auth_stowage=() auth_distribution=()
if [ "$auth" = 1 ]; then
  htpasswd -Bbn bench bench-password >"$work/htpasswd"
  creds=(--creds bench:bench-password)
  auth_stowage=(--htpasswd "$work/htpasswd")
  auth_distribution=(--htpasswd "$work/htpasswd")
fi

cat >"$work/stowage.yaml" <<YAML
DISTRIBUTED_STORAGE_CONFIG:
  local:
    - LocalStorage
    - storage_path: $work/stowage-local
  s3:
    - S3Storage
    - endpoint_url: $STOWAGE_S3_TEST_ENDPOINT
      s3_bucket: $STOWAGE_S3_TEST_BUCKET
      s3_region: $STOWAGE_S3_TEST_REGION
      storage_path: /bench-requests-stowage
      s3_access_key: $STOWAGE_S3_TEST_ACCESS_KEY
      s3_secret_key_env: BENCH_S3_SECRET
YAML
addr=()
start_stowage() { # location
  local port; port=$(free_port)
  mkdir -p "$work/run-$1"
  (cd "$work/run-$1" && exec "$stowage" --config "$work/stowage.yaml" --location "$1" serve \
    --no-redirect --listen "127.0.0.1:$port" "${auth_stowage[@]}" 2>"$work/stowage-$1.log") &
  pids+=($!); wait_up "127.0.0.1:$port"; addr+=("127.0.0.1:$port")
}
start_distribution() { # name config-args...
  local name=$1 port; shift; port=$(free_port)
  python3 integration/registry/distribution_config.py "$@" "${auth_distribution[@]}" \
    --listen "127.0.0.1:$port" >"$work/$name.yml"
  env -u AWS_CA_BUNDLE docker-registry serve "$work/$name.yml" 2>"$work/$name.log" &
  pids+=($!); wait_up "127.0.0.1:$port"; addr+=("127.0.0.1:$port")
}
start_stowage local
start_distribution distribution-local --storage filesystem --root "$work/distribution-local"
start_stowage s3
start_distribution distribution-s3 --storage s3 --endpoint "$STOWAGE_S3_TEST_ENDPOINT" \
  --bucket "$STOWAGE_S3_TEST_BUCKET" --region "$STOWAGE_S3_TEST_REGION" \
  --access-key-env STOWAGE_S3_TEST_ACCESS_KEY --secret-key-env BENCH_S3_SECRET \
  --root /bench-requests-distribution

python3 integration/registry/bench_requests.py --image "$work/image" --tag bench \
  --rounds "$rounds" --duration "$duration" "${creds[@]}" \
  --pair "local=${addr[0]},${addr[1]}" --pair "s3=${addr[2]},${addr[3]}"
