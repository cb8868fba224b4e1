#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine with Rust:
#   1. installs what the servers need (integration/servers/install.sh),
#   2. checks formatting, clippy, rustdoc (warnings are errors), that the
#      published crates package, the advisory audit, and that no locked
#      package needs a newer Rust than the workspace's rust-version,
#   3. runs the unit, local-driver and CLI tests, the CloudFront signer
#      against botocore and openssl, `stowage serve` on the local store
#      with skopeo and oras (and with TLS and htpasswd), and the self-test
#      of the registry benchmark's tools (against two distribution
#      registries, a few seconds),
#   4. starts Ceph RGW (S3 + STS, with the test OIDC provider) and Garage
#      (S3) on 127.0.0.1 in parallel, runs the S3 integration tests against
#      both (S3, CloudFront behind the edge verifier, `stowage serve` on
#      both, three `stowage serve` replicas behind haproxy) and the STS ones (including the long expiry group) against RGW,
#      then stops them; against RGW also the seeded fault simulation
#      (integration/simulate.sh); Azurite (the Azure Blob emulator) starts
#      beside them and the Azure tests run against it.
# A server that fails to start fails the run with its log shown.
#
# Environment: CARGO_TARGET_DIR is honoured (CI reuses one); set
# STOWAGE_SKIP_SERVERS=garage (or rgw, or azurite) to leave one server out while
# developing, and STOWAGE_S3_TEST_* to test an external endpoint instead
# (see integration/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
step() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }

step "install servers and tools"
integration/servers/install.sh

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "documentation, rustdoc warnings denied"
# --all-features, as docs.rs builds stowage-core and stowage: every
# feature-gated item (the testkit, every driver) is documented and its links
# checked. stowage-cloudfront's aws-lc and pure-rust build together (the
# pure-Rust signer takes precedence). The stowage binary is not documented
# (doc = false: its page would collide with the stowage library's).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

step "package the published crates"
# What crates.io would refuse is caught here: a missing readme or license
# file, a path dependency without a version, a file the manifest names but
# the package leaves out. --no-verify: verifying would build every crate
# again from its .crate file under target/package (a second full build on a
# small machine); the tests below build and run the same sources.
# stowage-integration is not published (publish = false).
cargo package --workspace --exclude stowage-integration --no-verify --allow-dirty

step "advisory audit"
integration/audit.sh

step "MSRV against the lock file"
integration/msrv.sh

step "unit, local driver and CLI tests"
cargo test --no-fail-fast --workspace --exclude stowage-integration
# The opt-in pure-Rust signer passes the same signer tests.
cargo test --no-fail-fast -p stowage-cloudfront --features pure-rust

step "build integration tests and the stowage binary they drive"
cargo build -p stowage-cli
cargo test -p stowage-integration --no-run

step "CloudFront signer against botocore and openssl; stowage serve on the local store"
local_failed=0
python3 integration/cloudfront/test_edge_verifier.py || local_failed=1
bash integration/registry/selftest.sh || local_failed=1
cargo test --no-fail-fast -p stowage-integration --features stowage-cloudfront/pure-rust \
  --test cloudfront_signer || local_failed=1
cargo test --no-fail-fast -p stowage-integration --test cloudfront_signer --test registry_local \
  --test registry_auth_tls --test registry_lifecycle --test docs_examples || local_failed=1

# The S3 groups run against every server; the STS groups (sts_expiry is the
# long one: it waits for real credential expiry) where the server has STS.
S3_TESTS=(--lib --bins --test s3_conformance --test s3_behaviour --test s3_faults --test cli_s3
  --test cloudfront --test cloudfront_conformance --test registry_s3 --test quay_s3_compatible
  --test registry_replicas --test gcs_profile --test s3_tls --test registry_gc_s3)
STS_TESTS=(--test sts --test cli_sts --test sts_expiry --test cloudfront_sts)
# The Azure groups run against Azurite (azurite-up.sh writes STOWAGE_AZURE_TEST_*).
AZURE_TESTS=(--test azure_conformance --test azure_behaviour --test registry_azure)
azure_tests() {
  cargo test --no-fail-fast -p stowage-integration "${AZURE_TESTS[@]}"
}
# The seeded fault simulation (integration/simulate.sh) runs against RGW:
# STOWAGE_SIM_SEEDS seeds of STOWAGE_SIM_OPS operations.
SIM_SEEDS=${STOWAGE_SIM_SEEDS:-80}
SIM_OPS=${STOWAGE_SIM_OPS:-30}
integration_tests() {
  local ok=0
  cargo test --no-fail-fast -p stowage-integration "${S3_TESTS[@]}" || ok=1
  if [ "${STOWAGE_S3_TEST_SERVER:-}" = rgw ]; then
    step "seeded fault simulation: $SIM_SEEDS seeds of $SIM_OPS operations"
    cargo run -q -p stowage-integration --bin simulate -- --seeds "$SIM_SEEDS" --ops "$SIM_OPS" || ok=1
  fi
  if [ -n "${STOWAGE_STS_TEST_ENDPOINT:-}" ]; then
    cargo test --no-fail-fast -p stowage-integration "${STS_TESTS[@]}" || ok=1
  else
    echo "no STOWAGE_STS_TEST_ENDPOINT: this server has no STS, STS groups not run against it"
  fi
  return $ok
}

if [ -n "${STOWAGE_S3_TEST_ENDPOINT:-}" ]; then
  step "integration tests against the external endpoint $STOWAGE_S3_TEST_ENDPOINT"
  integration_tests && exit $local_failed
  exit 1
fi

skip=${STOWAGE_SKIP_SERVERS:-}
servers=()
for s in rgw garage azurite; do
  case " $skip " in *" $s "*) echo "skipping $s (STOWAGE_SKIP_SERVERS)";; *) servers+=("$s");; esac
done

declare -A base
cleanup() {
  for s in "${!base[@]}"; do "$here/integration/servers/$s-down.sh" "${base[$s]}" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

step "start servers: ${servers[*]}"
pids=()
for s in "${servers[@]}"; do
  base[$s]=$(mktemp -d "/tmp/stowage-$s.XXXXXX")
  rmdir "${base[$s]}"
  "integration/servers/$s-up.sh" "${base[$s]}" > "/tmp/stowage-$s-up.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!servers[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "FAILED to start ${servers[$i]}:"
    cat "/tmp/stowage-${servers[$i]}-up.log"
    failed=1
  else
    tail -n 3 "/tmp/stowage-${servers[$i]}-up.log"
  fi
done
[ "$failed" -eq 0 ] || exit 1

status=0
for s in "${servers[@]}"; do
  step "integration tests against $s"
  tests=integration_tests
  [ "$s" = azurite ] && tests=azure_tests
  if ! ( set -a; . "${base[$s]}/env"; set +a; "$tests" ); then
    echo "integration tests FAILED against $s"
    status=1
  fi
done
[ "$local_failed" -eq 0 ] || { echo "signer or local registry tests FAILED"; status=1; }
exit $status
