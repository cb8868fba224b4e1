#!/usr/bin/env bash
# Starts Ceph RGW on 127.0.0.1 and runs the S3 throughput benchmark
# (integration/src/bin/s3_bench.rs) in release mode. Extra arguments go to
# the benchmark, e.g. --rounds 5 --size-mib 1024.
set -euo pipefail
cd "$(dirname "$0")/.."
# Only what this benchmark starts: RGW, not Garage or cargo-audit.
STOWAGE_INSTALL_SKIP="garage cargo-audit" integration/servers/install.sh >/dev/null
cargo build --release -p stowage-cli -p stowage-integration --bin stowage --bin s3_bench
base=$(mktemp -d /tmp/stowage-bench-rgw.XXXXXX)
rmdir "$base"
trap 'integration/servers/rgw-down.sh "$base" >/dev/null 2>&1 || true' EXIT
STOWAGE_RGW_PORT=${STOWAGE_RGW_PORT:-27580} STOWAGE_RGW_MON_PORT=${STOWAGE_RGW_MON_PORT:-23400} \
  STOWAGE_RGW_MON_V1_PORT=${STOWAGE_RGW_MON_V1_PORT:-26889} STOWAGE_OIDC_PORT=${STOWAGE_OIDC_PORT:-18180} integration/servers/rgw-up.sh "$base"
set -a; . "$base/env"; set +a
"${CARGO_TARGET_DIR:-target}/release/s3_bench" "$@"
