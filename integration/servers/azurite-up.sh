#!/usr/bin/env bash
# Start a throwaway Azurite (the Azure Blob Storage emulator, blob service
# only) on 127.0.0.1 with the container stowage-test; all state lives in
# BASE_DIR.
#
#   azurite-up.sh BASE_DIR      then: source BASE_DIR/env; later: azurite-down.sh BASE_DIR
#
# Binary: $AZURITE_BIN, else $STOWAGE_TOOLS_DIR/azurite/node_modules/.bin/azurite-blob
# (/opt/stowage-ci; integration/servers/install.sh puts it there), else
# azurite-blob on PATH. Port (env): STOWAGE_AZURITE_PORT (24100).
# STOWAGE_SERVER_WAIT (60) bounds each wait. The account is Azurite's
# published development account, devstoreaccount1; the account URL is
# http://127.0.0.1:PORT/devstoreaccount1. Azurite runs with
# --skipApiVersionCheck (clients may send API versions newer than it knows).
# BASE_DIR/env appears only once a signed put/get/list/delete passed.
set -Eeuo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 BASE_DIR" >&2; exit 2; }
PORT=${STOWAGE_AZURITE_PORT:-24100}
WAIT=${STOWAGE_SERVER_WAIT:-60}
PY=${PYTHON:-python3}
ACCOUNT=devstoreaccount1
# Azurite's published development key (Azure's emulator documentation): a
# test credential, valid for the emulator only.
KEY=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==
CONTAINER=stowage-test
ACCOUNT_URL=http://127.0.0.1:$PORT/$ACCOUNT

TOOLS=${STOWAGE_TOOLS_DIR:-/opt/stowage-ci}
if [ -n "${AZURITE_BIN:-}" ]; then A=$AZURITE_BIN
elif [ -x "$TOOLS/azurite/node_modules/.bin/azurite-blob" ]; then A=$TOOLS/azurite/node_modules/.bin/azurite-blob
elif A=$(command -v azurite-blob); then :
else echo "azurite-up: no azurite-blob; run integration/servers/install.sh" >&2; exit 1
fi

require_free_ports "$PORT"
prepare_base "$1" .stowage-azurite
mkdir -p "$BASE/data"

# On any failure: show the log, stop azurite, keep BASE for inspection.
fail() {
  trap - ERR
  [ "$BASHPID" = $$ ] || exit 1  # in a subshell: let the main shell report it
  echo "azurite-up: FAILED: $1" >&2
  tail_logs "$BASE/azurite.log"
  stop_pidfiles "$BASE/data" "$BASE/azurite.pid"
  echo "azurite-up: server stopped; state kept in $BASE (azurite-down.sh removes it)" >&2
  exit 1
}
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR

echo "azurite-up: starting $A in $BASE"
nohup "$A" --blobHost 127.0.0.1 --blobPort "$PORT" --location "$BASE/data" \
  --skipApiVersionCheck --loose --disableTelemetry --silent \
  </dev/null >"$BASE/azurite.log" 2>&1 &
echo $! >"$BASE/azurite.pid"
# An unsigned listing is refused (403) once the blob service answers.
ready() { [ "$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$ACCOUNT_URL?comp=list")" = 403 ]; }
wait_for --pid "$(cat "$BASE/azurite.pid")" "azurite blob service" "$WAIT" ready ||
  fail "the blob service did not answer on $ACCOUNT_URL"
step "server up"

# The container, then a signed put/get/list/delete (Shared Key, as the
# driver signs).
"$PY" - "$ACCOUNT_URL" "$ACCOUNT" "$KEY" "$CONTAINER" <<'PYEOF' || fail "container or smoke check failed"
import base64, hashlib, hmac, http.client, sys, urllib.parse
from email.utils import formatdate

url, account, key, container = sys.argv[1:5]
origin = urllib.parse.urlsplit(url)
STANDARD = ["content-encoding", "content-language", "content-length", "content-md5",
            "content-type", "date", "if-modified-since", "if-match", "if-none-match",
            "if-unmodified-since", "range"]


def call(method, path, query="", headers=None, body=b""):
    headers = dict(headers or {})
    headers["x-ms-date"] = formatdate(usegmt=True)
    headers["x-ms-version"] = "2021-08-06"
    if method == "PUT" or body:
        headers["Content-Length"] = str(len(body))
    low = {k.lower(): v for k, v in headers.items()}
    values = ["" if n == "content-length" and low.get(n) == "0" else low.get(n, "")
              for n in STANDARD]
    ms = "".join(f"{k}:{low[k].strip()}\n" for k in sorted(k for k in low if k.startswith("x-ms-")))
    full = origin.path.rstrip("/") + urllib.parse.quote(path, safe="/~")
    resource = "/" + account + full
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    for name in sorted(params):
        resource += f"\n{name.lower()}:{','.join(sorted(params[name]))}"
    text = method + "\n" + "\n".join(values) + "\n" + ms + resource
    mac = hmac.new(base64.b64decode(key), text.encode(), hashlib.sha256).digest()
    headers["Authorization"] = f"SharedKey {account}:{base64.b64encode(mac).decode()}"
    conn = http.client.HTTPConnection(origin.hostname, origin.port, timeout=30)
    conn.request(method, full + ("?" + query if query else ""), body=body, headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    return answer.status, data


status, data = call("PUT", f"/{container}", "restype=container")
if status not in (201, 409):
    sys.exit(f"creating container {container}: HTTP {status} {data[:300]!r}")
blob = f"/{container}/azurite-up check"
for method, path, query, headers, body, expected in [
    ("PUT", blob, "", {"x-ms-blob-type": "BlockBlob"}, b"stowage", 201),
    ("GET", blob, "", {}, b"", 200),
    ("GET", f"/{container}", "restype=container&comp=list&prefix=azurite-up", {}, b"", 200),
    ("DELETE", blob, "", {}, b"", 202),
]:
    status, data = call(method, path, query, headers, body)
    if status != expected:
        sys.exit(f"{method} {path}?{query}: HTTP {status}, expected {expected}: {data[:300]!r}")
    if method == "GET" and not query and data != b"stowage":
        sys.exit("the blob read back differs from what was written")
    if query.startswith("restype=container&comp=list") and b"azurite-up check" not in data:
        sys.exit("the listing does not show the blob")
PYEOF
step "container, smoke check"

write_env "$BASE/env" \
  STOWAGE_AZURE_TEST_ACCOUNT_URL="$ACCOUNT_URL" \
  STOWAGE_AZURE_TEST_ACCOUNT="$ACCOUNT" \
  STOWAGE_AZURE_TEST_KEY="$KEY" \
  STOWAGE_AZURE_TEST_CONTAINER="$CONTAINER" \
  STOWAGE_AZURE_TEST_SERVER=azurite

trap - ERR
echo "azurite-up: ready at $ACCOUNT_URL (pid $(cat "$BASE/azurite.pid")); env: $BASE/env"
