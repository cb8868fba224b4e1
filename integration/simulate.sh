#!/usr/bin/env bash
# The seeded fault simulation of the S3 driver (integration/src/sim/, the
# binary integration/src/bin/simulate.rs) against Ceph RGW on 127.0.0.1:
#
#   integration/simulate.sh --seeds 20          seeds 1 to 20
#   integration/simulate.sh --seed 7 --ops 25   replay one seed
#
# Other arguments go to the binary: --ops K, --fault-rate P, --faults LIST,
# --verbose (--help lists them). With STOWAGE_S3_TEST_ENDPOINT set (and the
# other STOWAGE_S3_TEST_* variables, see integration/README.md) it runs
# against that server and starts none. Exits 0 only when no invariant was
# violated. CARGO_TARGET_DIR is honoured (a debug build, as CI's).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)

if [ -z "${STOWAGE_S3_TEST_ENDPOINT:-}" ]; then
  # Only what the simulation needs: RGW, not Garage or cargo-audit.
  STOWAGE_INSTALL_SKIP="garage cargo-audit" integration/servers/install.sh >/dev/null
  base=$(mktemp -d /tmp/stowage-sim-rgw.XXXXXX)
  rmdir "$base"
  log="$base-up.log"
  trap '"$here/integration/servers/rgw-down.sh" "$base" >/dev/null 2>&1 || true' EXIT
  # Ports of their own, so that it runs next to integration/test-all.sh.
  if ! STOWAGE_RGW_PORT=${STOWAGE_RGW_PORT:-27680} STOWAGE_RGW_MON_PORT=${STOWAGE_RGW_MON_PORT:-23500} \
    STOWAGE_RGW_MON_V1_PORT=${STOWAGE_RGW_MON_V1_PORT:-26989} STOWAGE_OIDC_PORT=${STOWAGE_OIDC_PORT:-18280} \
    integration/servers/rgw-up.sh "$base" >"$log" 2>&1; then
    echo "FAILED to start RGW:"
    cat "$log"
    exit 1
  fi
  tail -n 3 "$log"
  set -a; . "$base/env"; set +a
fi

cargo run -p stowage-integration --bin simulate -- "$@"
