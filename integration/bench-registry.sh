#!/usr/bin/env bash
# The registry benchmark of docs/benchmarks.md: the same ~1 GiB multi-layer
# image pushed and pulled with skopeo through `stowage serve` (release build)
# and through Debian's docker-registry (distribution 2.8), both on local disk
# and both on S3 against a Ceph RGW this script starts, interleaved over
# several rounds in one run (integration/registry/bench_registries.py).
# Both registries serve blob bytes themselves (stowage --no-redirect,
# distribution with redirects disabled), so both sit on the data path.
# stowage's S3 location has a memory budget of 2 part buffers across
# all uploads (s3_max_parts_in_flight; STOWAGE_BENCH_PARTS_IN_FLIGHT
# overrides it), distribution its default 16 MiB chunks.
#
# Each round pulls every image --pulls (3) times: a pull takes a few seconds
# and is noisier than a push. Each pull is followed by a GET of all layers at
# once with curl (bytes discarded), where the server rather than skopeo is
# the slow side. Between the pushes and the pulls RGW's garbage
# collector is run to the end, so no pull pays for work a push left behind.
#
# With --auth both registries check basic auth (one bcrypt htpasswd file)
# on every request of the run.
#
#   integration/bench-registry.sh [--rounds 3] [--pulls 3] [--layers 8] [--layer-mib 128] [--auth]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 pulls=3 layers=8 layer_mib=128 auth=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2;;
    --pulls) pulls=$2; shift 2;;
    --layers) layers=$2; shift 2;;
    --layer-mib) layer_mib=$2; shift 2;;
    --auth) auth=1; shift;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done

. integration/bench-lib.sh
bench_setup bench-registry

echo "building a ${layers} x ${layer_mib} MiB image"
python3 integration/registry/make_oci_image.py "$work/image" --layers "$layers" \
  --layer-mib "$layer_mib" --tag bench

auth_stowage=() auth_distribution=()
if [ "$auth" = 1 ]; then
  htpasswd -Bbn bench bench-password >"$work/htpasswd"
  export BENCH_CREDS=bench:bench-password
  auth_stowage=(--htpasswd "$work/htpasswd")
  auth_distribution=(--htpasswd "$work/htpasswd")
fi


# stowage: one config with both locations.
cat >"$work/stowage.yaml" <<EOF
DISTRIBUTED_STORAGE_CONFIG:
  local:
    - LocalStorage
    - storage_path: $work/stowage-local
  s3:
    - S3Storage
    - endpoint_url: $STOWAGE_S3_TEST_ENDPOINT
      s3_bucket: $STOWAGE_S3_TEST_BUCKET
      s3_region: $STOWAGE_S3_TEST_REGION
      storage_path: /bench-stowage
      s3_access_key: $STOWAGE_S3_TEST_ACCESS_KEY
      s3_secret_key_env: BENCH_S3_SECRET
      s3_max_parts_in_flight: ${STOWAGE_BENCH_PARTS_IN_FLIGHT:-2}
  distribution:
    - S3Storage
    - endpoint_url: $STOWAGE_S3_TEST_ENDPOINT
      s3_bucket: $STOWAGE_S3_TEST_BUCKET
      s3_region: $STOWAGE_S3_TEST_REGION
      storage_path: /bench-distribution
      s3_access_key: $STOWAGE_S3_TEST_ACCESS_KEY
      s3_secret_key_env: BENCH_S3_SECRET
EOF

targets=()
start_stowage() { # name location
  local port; port=$(free_port)
  # Upload records in the storage (the default), as distribution keeps its.
  "$stowage" --config "$work/stowage.yaml" --location "$2" serve --no-redirect \
    --listen "127.0.0.1:$port" "${auth_stowage[@]}" 2>"$work/$1.log" &
  pids+=($!); targets+=(--target "$1=127.0.0.1:$port:$!"); wait_up "127.0.0.1:$port"
}
start_distribution() { # name config-args...
  local name=$1 port; shift; port=$(free_port)
  python3 integration/registry/distribution_config.py "$@" "${auth_distribution[@]}" \
    --listen "127.0.0.1:$port" >"$work/$name.yml"
  env -u AWS_CA_BUNDLE docker-registry serve "$work/$name.yml" 2>"$work/$name.log" &
  pids+=($!); targets+=(--target "$name=127.0.0.1:$port:$!"); wait_up "127.0.0.1:$port"
}
start_stowage stowage-local local
start_stowage stowage-s3 s3
start_distribution distribution-local --storage filesystem --root "$work/distribution-local"
start_distribution distribution-s3 --storage s3 --endpoint "$STOWAGE_S3_TEST_ENDPOINT" \
  --bucket "$STOWAGE_S3_TEST_BUCKET" --region "$STOWAGE_S3_TEST_REGION" \
  --access-key-env STOWAGE_S3_TEST_ACCESS_KEY --secret-key-env BENCH_S3_SECRET --root /bench-distribution

# Between rounds: drop the blobs stowage wrote to RGW in the last round (its
# OSD lives in memory) and let its garbage collector free them.
# Distribution's data stays: it caches blob descriptors in memory and breaks
# when its storage is emptied behind its back.
between="'$stowage' --config '$work/stowage.yaml' --location s3 rm -r blobs >/dev/null 2>&1 || true; \
radosgw-admin -c '$STOWAGE_RGW_CONF' gc process --include-all >/dev/null 2>&1 || true"
before_pulls="radosgw-admin -c '$STOWAGE_RGW_CONF' gc process --include-all >/dev/null 2>&1 || true"

python3 integration/registry/bench_registries.py --image "$work/image" --tag bench \
  --rounds "$rounds" --pulls-per-round "$pulls" "${targets[@]}" \
  --between-rounds "$between" --before-pulls "$before_pulls" \
  --out "${BENCH_OUT:-/tmp/stowage-registry-bench.json}"
