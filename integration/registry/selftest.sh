#!/usr/bin/env bash
# Self-test of the registry test tools in this directory, against Debian's
# docker-registry (distribution 2.8) with filesystem storage.
#
# Starts two registries on free 127.0.0.1 ports (configs from
# distribution_config.py), then checks:
#   - make_oci_image.py --small and a 3 x 8 MiB image: skopeo reads them, and a
#     push/pull round trip with skopeo gives back the same blobs;
#   - oras_check.py, with monolithic and chunked uploads;
#   - bench_registries.py, 2 rounds over both registries (named
#     distribution-local and stowage-local), results file complete.
# Stops what it started and removes its directory, whatever happens.
#
# Needs: apt-get install -y skopeo docker-registry; python3 -m pip install oras
# Usage: integration/registry/selftest.sh
# Ends with "selftest: N passed, N failed"; exit status 1 if any failed.

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/registry-selftest.XXXXXX)
PIDS=()
PASSED=0
FAILED=0

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in skopeo docker-registry python3; do
    command -v "$tool" >/dev/null || { echo "selftest: $tool not found" >&2; exit 1; }
done
python3 -c 'import oras' 2>/dev/null || { echo "selftest: python3 -m pip install oras" >&2; exit 1; }

check() {  # check DESCRIPTION COMMAND...: run it, count and report the outcome
    local description=$1; shift
    if "$@" >"$WORK/last.log" 2>&1; then
        PASSED=$((PASSED + 1)); echo "ok   $description"
    else
        FAILED=$((FAILED + 1)); echo "FAIL $description"; tail -20 "$WORK/last.log" | sed 's/^/     /'
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_registry NAME: starts a registry, sets REG_PORT and REG_PID
start_registry() {
    local name=$1 port
    port=$(free_port)
    python3 "$HERE/distribution_config.py" --storage filesystem --root "$WORK/$name-data" \
        --listen "127.0.0.1:$port" >"$WORK/$name.yml" || exit 1
    # distribution 2.8's S3 driver panics at start when AWS_CA_BUNDLE is set.
    env -u AWS_CA_BUNDLE docker-registry serve "$WORK/$name.yml" >"$WORK/$name.log" 2>&1 &
    REG_PID=$!
    REG_PORT=$port
    PIDS+=("$REG_PID")
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" && return 0
        sleep 0.1
    done
    echo "selftest: registry $name did not start:" >&2; tail "$WORK/$name.log" >&2; exit 1
}

# round_trip DIR TAG PORT: push and pull back with skopeo, the same blobs must come back
round_trip() {
    local dir=$1 tag=$2 port=$3 name back
    name=$(basename "$dir")
    back="$WORK/back-$name"
    skopeo copy -q --preserve-digests --dest-tls-verify=false \
        "oci:$dir:$tag" "docker://127.0.0.1:$port/test/$name:$tag" &&
    skopeo copy -q --preserve-digests --dest-oci-accept-uncompressed-layers --src-tls-verify=false \
        "docker://127.0.0.1:$port/test/$name:$tag" "oci:$back:$tag" &&
    diff <(cd "$dir/blobs/sha256" && sha256sum -- *) <(cd "$back/blobs/sha256" && sha256sum -- *) &&
    (cd "$back/blobs/sha256" && sha256sum -- * | awk '$1 != $2 { bad = 1 } END { exit bad }')
}

# manifest_matches DIR TAG: skopeo inspect --raw gives the manifest make_oci_image.py reported
manifest_matches() {
    local dir=$1 tag=$2 expected
    expected=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifest_digest"])' "$dir.json")
    [ "sha256:$(skopeo inspect --raw "oci:$dir:$tag" | sha256sum | cut -d' ' -f1)" = "$expected" ]
}

# results_complete FILE: 2 rounds x 2 targets measured (one push, two
# pulls and two rounds of GETs each), and the stowage/distribution ratios present
results_complete() {
    python3 - "$1" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
assert len(results["measurements"]) == 4, results["measurements"]
assert [(m["round"], m["target"]) for m in results["measurements"]] == [
    (1, "distribution-local"), (1, "stowage-local"),
    (2, "distribution-local"), (2, "stowage-local")], results["measurements"]
for m in results["measurements"]:
    assert len(m["pulls"]) == 2 and len(m["gets"]) == 2, m
    assert all(t["seconds"] > 0 and t["server_cpu_seconds"] >= 0
               for t in [m["push"], *m["pulls"], *m["gets"]]), m
ratios = results["comparisons"]["stowage-local"]
assert len(ratios["push"]["ratios"]) == 2, ratios
assert len(ratios["pull"]["ratios"]) == len(ratios["get"]["ratios"]) == 4, ratios
assert results["summary"]["stowage-local"]["pull"]["transfers"] == 4
assert results["summary"]["stowage-local"]["get"]["transfers"] == 4
EOF
}

start_registry a
PORT_A=$REG_PORT PID_A=$REG_PID
start_registry b
PORT_B=$REG_PORT PID_B=$REG_PID

check "make_oci_image.py --small" \
    sh -c "python3 '$HERE/make_oci_image.py' '$WORK/small' --small --tag t1 > '$WORK/small.json'"
check "skopeo inspect --raw of the small image" manifest_matches "$WORK/small" t1
check "skopeo round trip of the small image" round_trip "$WORK/small" t1 "$PORT_A"
check "make_oci_image.py 3 x 8 MiB" \
    sh -c "python3 '$HERE/make_oci_image.py' '$WORK/img' --layers 3 --layer-mib 8 --tag v1 > '$WORK/img.json'"
check "skopeo inspect --raw of the 3 x 8 MiB image" manifest_matches "$WORK/img" v1
check "skopeo round trip of the 3 x 8 MiB image" round_trip "$WORK/img" v1 "$PORT_A"
check "oras_check.py" python3 "$HERE/oras_check.py" --registry "127.0.0.1:$PORT_A" --repo test/oras
check "oras_check.py --chunked" \
    python3 "$HERE/oras_check.py" --registry "127.0.0.1:$PORT_A" --repo test/oras-chunked --chunked
check "bench_registries.py, 2 rounds" \
    python3 "$HERE/bench_registries.py" --image "$WORK/img" --tag v1 --rounds 2 \
        --pulls-per-round 2 --before-pulls true \
        --target "distribution-local=127.0.0.1:$PORT_A:$PID_A" \
        --target "stowage-local=127.0.0.1:$PORT_B:$PID_B" --out "$WORK/results.json"
grep "^|" "$WORK/last.log"
check "bench results complete" results_complete "$WORK/results.json"

echo "selftest: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
