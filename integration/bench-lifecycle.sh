#!/usr/bin/env bash
# A registry's life at scale, `stowage serve` (release build) against
# Debian's docker-registry (distribution 2.8), each on a local directory and
# on S3 against a Ceph RGW this script starts (integration/bench-lib.sh):
#
# 1. Garbage collection. The same data set goes into all four registries
#    (50 repositories, 1,000 image manifests, 5,000 config and layer blobs;
#    integration/registry/bench_lifecycle.py documents its shape), pushed
#    through the OCI API 16 requests at a time. Distribution's S3 push runs
#    at about 30 blobs/s on 2 cores (19 S3 requests per blob), so
#    distribution-s3 gets the first repository through its API and the
#    rest as a copy of what distribution-local wrote (its own layout, key
#    for key). Then 10% of the manifests are deleted through each
#    registry's API, and each collection is timed once (it is destructive;
#    no rounds): `stowage gc --grace 0s` while stowage serve keeps running,
#    `docker-registry garbage-collect` with its registry stopped, as
#    distribution requires (restarted afterwards). The S3 requests each
#    collection sends are counted by RGW itself (its `rgw.req` counter,
#    read from its admin socket; the registries left running are idle);
#    the blob objects in storage are counted before and after. Then the
#    kept images must come back intact from every registry.
# 2. Tag and catalog pages. A repository with 100,000 tags in each
#    registry: the first 200 through the API (timed, which shows why not
#    all of them: 100,000 PUTs take up to half an hour per registry), the rest
#    written straight into each registry's storage layout (files on local
#    disk, S3 PUTs on RGW). Then the latency of the first tag page
#    (?n=100), a page from the middle (?n=100&last=t050000) and the first
#    catalog page (?n=100, 51 repositories), over --rounds interleaved
#    rounds of --requests requests, the registries alternating which goes
#    first; a registry whose requests have taken --budget/--rounds seconds
#    in a round stops that round early.
#
# RGW as integration/servers/rgw-up.sh configures it holds back the last
# part of every answer after the first on a kept-alive connection for about
# 40 ms (Nagle's algorithm against the client's delayed ACK), which would
# make any sequential client look 40 ms per request slow; the script
# restarts its RGW with tcp_nodelay=1 unless rgw-up.sh already sets it.
#
#   integration/bench-lifecycle.sh [--repos 50] [--tags 100000] [--rounds 4]
#       [--requests 5] [--budget 60] [--json FILE]
#
# --json FILE keeps every figure (the state of bench_lifecycle.py). About
# 11 minutes on 2 cores with the defaults, half of it writing the 300,000
# S3 objects of the tags.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
repos=50 tags=100000 rounds=4 requests=5 budget=60 json=
while [ $# -gt 0 ]; do
  case "$1" in
    --repos) repos=$2; shift 2;;
    --tags) tags=$2; shift 2;;
    --rounds) rounds=$2; shift 2;;
    --requests) requests=$2; shift 2;;
    --budget) budget=$2; shift 2;;
    --json) json=$(realpath "$2"); shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
. integration/bench-lib.sh
STOWAGE_RGW_PORT=${STOWAGE_RGW_PORT:-27880} bench_setup bench-lifecycle

if ! grep -q '^rgw frontends = .*tcp_nodelay' "$rgw/ceph.conf"; then
  echo "restarting RGW with tcp_nodelay=1" >&2
  rgw_pid=$(cat "$rgw/run/client.rgw.a.pid")
  kill "$rgw_pid"
  for _ in $(seq 150); do kill -0 "$rgw_pid" 2>/dev/null || break; sleep 0.2; done
  sed -i 's/^\(rgw frontends = beast .*\)$/\1 tcp_nodelay=1/' "$rgw/ceph.conf"
  radosgw -c "$rgw/ceph.conf" -n client.rgw.a </dev/null >"$work/radosgw-restart.log" 2>&1
  for _ in $(seq 150); do
    curl -sf -o /dev/null --max-time 2 "$STOWAGE_S3_TEST_ENDPOINT/" && break
    sleep 0.2
  done
  curl -sf -o /dev/null --max-time 2 "$STOWAGE_S3_TEST_ENDPOINT/" ||
    { echo "RGW did not come back after its restart" >&2; exit 1; }
fi

stowage_prefix=bench-lifecycle-stowage
distribution_prefix=bench-lifecycle-distribution
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
      storage_path: /$stowage_prefix
      s3_access_key: $STOWAGE_S3_TEST_ACCESS_KEY
      s3_secret_key_env: BENCH_S3_SECRET
YAML

declare -A addr pid
start_stowage() { # name location
  local port; port=$(free_port)
  mkdir -p "$work/run-$1"
  (cd "$work/run-$1" && exec "$stowage" --config "$work/stowage.yaml" --location "$2" serve \
    --allow-delete --no-redirect --listen "127.0.0.1:$port" 2>"$work/$1.log") &
  pids+=($!); pid[$1]=$!; addr[$1]=127.0.0.1:$port; wait_up "${addr[$1]}"
}
configure_distribution() { # name config-args...
  local name=$1 port; shift; port=$(free_port)
  addr[$name]=127.0.0.1:$port
  python3 integration/registry/distribution_config.py "$@" --listen "${addr[$name]}" \
    >"$work/$name.yml"
}
start_distribution() { # name (its config written by configure_distribution)
  env -u AWS_CA_BUNDLE docker-registry serve "$work/$1.yml" 2>>"$work/$1.log" &
  pids+=($!); pid[$1]=$!; wait_up "${addr[$1]}"
}
stop_distribution() { # name
  kill "${pid[$1]}"; wait "${pid[$1]}" 2>/dev/null || true
}
start_stowage stowage-local local
start_stowage stowage-s3 s3
configure_distribution distribution-local --storage filesystem --root "$work/distribution-local"
configure_distribution distribution-s3 --storage s3 --endpoint "$STOWAGE_S3_TEST_ENDPOINT" \
  --bucket "$STOWAGE_S3_TEST_BUCKET" --region "$STOWAGE_S3_TEST_REGION" \
  --access-key-env STOWAGE_S3_TEST_ACCESS_KEY --secret-key-env BENCH_S3_SECRET \
  --root "/$distribution_prefix"
start_distribution distribution-local
start_distribution distribution-s3
target() { echo "--target $1=${addr[$1]}"; }
all_targets=$(for n in stowage-local distribution-local stowage-s3 distribution-s3; do
  target "$n"
done)

lifecycle=(python3 integration/registry/bench_lifecycle.py --state "$work/state.json")
asok="$rgw/run/client.rgw.a.asok"

echo "== 1. the data set, 10% deleted, garbage collection" >&2
# shellcheck disable=SC2046
"${lifecycle[@]}" push --repos "$repos" $(target stowage-local) $(target distribution-local) \
  $(target stowage-s3)
"${lifecycle[@]}" push --repos "$repos" --only-repos 1 $(target distribution-s3)
"${lifecycle[@]}" copy-tree --name distribution-s3 --source-name distribution-local \
  --from "$work/distribution-local/docker" --to-s3 "$distribution_prefix/docker"
# shellcheck disable=SC2086
"${lifecycle[@]}" delete --repos "$repos" $all_targets

"${lifecycle[@]}" gc --name stowage-s3 --storage s3 --rgw-asok "$asok" \
  --blobs "s3:$stowage_prefix/blobs" -- \
  "$stowage" --config "$work/stowage.yaml" --location s3 gc --grace 0s
stop_distribution distribution-s3
"${lifecycle[@]}" gc --name distribution-s3 --storage s3 --stopped --rgw-asok "$asok" \
  --blobs "s3:$distribution_prefix/docker/registry/v2/blobs" -- \
  env -u AWS_CA_BUNDLE docker-registry garbage-collect "$work/distribution-s3.yml"
start_distribution distribution-s3
"${lifecycle[@]}" gc --name stowage-local --storage local \
  --blobs "fs:$work/stowage-local/blobs" -- \
  "$stowage" --config "$work/stowage.yaml" --location local gc --grace 0s
stop_distribution distribution-local
"${lifecycle[@]}" gc --name distribution-local --storage local --stopped \
  --blobs "fs:$work/distribution-local/docker/registry/v2/blobs" -- \
  docker-registry garbage-collect "$work/distribution-local.yml"
start_distribution distribution-local
# shellcheck disable=SC2086
"${lifecycle[@]}" check --repos "$repos" $all_targets

echo "== 2. $tags tags, tag and catalog pages" >&2
# shellcheck disable=SC2086
"${lifecycle[@]}" seed-tags --tags "$tags" $all_targets \
  --store "stowage-local=stowage:fs:$work/stowage-local" \
  --store "distribution-local=distribution:fs:$work/distribution-local" \
  --store "stowage-s3=stowage:s3:$stowage_prefix" \
  --store "distribution-s3=distribution:s3:$distribution_prefix"
"${lifecycle[@]}" paging --rounds "$rounds" --requests "$requests" --budget "$budget" \
  --middle "$(printf 't%06d' $((tags / 2)))" \
  --pair "local=${addr[stowage-local]},${addr[distribution-local]}" \
  --pair "s3=${addr[stowage-s3]},${addr[distribution-s3]}"

"${lifecycle[@]}" report --started "$started"
[ -z "$json" ] || cp "$work/state.json" "$json"
