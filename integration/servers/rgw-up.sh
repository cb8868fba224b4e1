#!/usr/bin/env bash
# Start a throwaway single-node Ceph cluster (1 mon, 1 in-memory OSD, no mgr)
# and a radosgw with S3, STS and IAM on 127.0.0.1; all state lives in BASE_DIR.
#
#   rgw-up.sh BASE_DIR      then: source BASE_DIR/env; later: rgw-down.sh BASE_DIR
#
# Ports (env): STOWAGE_RGW_PORT (27480), STOWAGE_RGW_MON_PORT (23300, msgr v2),
# STOWAGE_RGW_MON_V1_PORT (26789). STOWAGE_OIDC_PORT (18080) is the port of the
# OIDC provider that WebRole trusts. STOWAGE_SERVER_WAIT (60) bounds each wait.
# BASE_DIR/env appears only once the server passed check-s3.py.
set -Eeuo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 BASE_DIR" >&2; exit 2; }
RGW_PORT=${STOWAGE_RGW_PORT:-27480}
MON_PORT=${STOWAGE_RGW_MON_PORT:-23300}
MON_V1_PORT=${STOWAGE_RGW_MON_V1_PORT:-26789}
OIDC_PORT=${STOWAGE_OIDC_PORT:-18080}
WAIT=${STOWAGE_SERVER_WAIT:-60}
PY=${PYTHON:-python3}
ENDPOINT=http://127.0.0.1:$RGW_PORT
BUCKET=stowage-test
TESTER_AK=TESTERACCESSKEY00001 TESTER_SK=testersecretkey0000000000000000000000001
ADMIN_AK=ADMINACCESSKEY000001 ADMIN_SK=adminsecretkey00000000000000000000000001

require_free_ports "$RGW_PORT" "$MON_PORT" "$MON_V1_PORT" "$OIDC_PORT"
prepare_base "$1" .stowage-rgw
mkdir -p "$BASE"/{mon/ceph-a,osd,run,log,rgw}
CONF=$BASE/ceph.conf
L=$BASE/log
LOGS=()  # the logs worth showing if the current phase fails

# On any failure: show the logs, stop what we started, keep BASE for inspection.
fail() {
  trap - ERR
  [ "$BASHPID" = $$ ] || exit 1  # in a subshell: let the main shell report it
  echo "rgw-up: FAILED: $1" >&2
  tail_logs "${LOGS[@]}"
  stop_pidfiles "$BASE/oidc" "$BASE/run/oidc.pid"
  stop_ceph "$BASE"
  echo "rgw-up: daemons stopped; state kept in $BASE (rgw-down.sh removes it)" >&2
  exit 1
}
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR

# Bounded wrappers: a cluster that is not there must not hang the script.
# (A daemon's start command returns once the forked daemon has initialised.)
start() { timeout "$WAIT" "$@"; }
ceph_() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }
rgwadmin() { timeout 60 radosgw-admin -c "$CONF" "$@"; }

echo "rgw-up: starting Ceph + radosgw in $BASE"
# ceph-mon shuts itself down when its disk has less than 5% free
# (mon_data_avail_crit), silently from here: say so first.
avail_pct=$(df -P "$(dirname "$BASE")" | awk 'NR == 2 { print int($4 * 100 / $2) }')
if [ "${avail_pct:-100}" -le 5 ]; then
  echo "rgw-up: FAILED: only ${avail_pct}% of the disk holding $BASE is free; ceph-mon needs more than 5%" >&2
  exit 1
fi
FSID=$(cat /proc/sys/kernel/random/uuid)
MON_ADDR="[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]"
# Without "ms mon client mode = crc secure" radosgw hangs for 300 s at start.
cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = $MON_ADDR
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
ms client mode = crc secure
ms bind ipv6 = false
run dir = $BASE/run
log file = $BASE/log/\$name.log
admin socket = $BASE/run/\$name.asok
pid file = $BASE/run/\$name.pid
keyring = $BASE/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
[mon]
mon data = $BASE/mon/ceph-\$id
mon cluster log file = $BASE/log/cluster.log
# Each map change otherwise waits up to 1 s; startup makes dozens of them.
paxos propose interval = 0.1
[osd]
osd data = $BASE/osd/ceph-\$id
osd objectstore = memstore
memstore device bytes = 8589934592
# S3 keys go up to 1,024 bytes and RGW prefixes them with the bucket marker;
# the memstore has no file-name limit (256, the ext4 advice, refuses keys of
# about 200 bytes with an opaque 500, e.g. a registry's sha512 link keys).
osd max object name len = 2048
osd max object namespace len = 64
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $BASE/rgw
rgw dns name = localhost
rgw sts key = abcdefghijklmnop
rgw sts min session duration = 60
rgw gc obj min wait = 10
rgw gc processor period = 10
rgw s3 auth use sts = true
rgw enable apis = s3, s3website, admin, sts, iam
EOF

# Monitor. The daemons fork into the background and write run/<name>.pid.
LOGS=("$L/mon-mkfs.out" "$L/mon.out" "$L/mon.a.log")
ceph-authtool --create-keyring "$BASE/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "$MON_ADDR" "$BASE/monmap" >/dev/null
start ceph-mon -c "$CONF" --mkfs -i a --monmap "$BASE/monmap" --keyring "$BASE/keyring" \
  >"$L/mon-mkfs.out" 2>&1
start ceph-mon -c "$CONF" -i a </dev/null >"$L/mon.out" 2>&1
mon_up() { timeout 5 ceph -c "$CONF" --connect-timeout 2 mon stat; }
wait_for --pid "$(pid_in "$BASE/run/mon.a.pid")" ceph-mon "$WAIT" mon_up ||
  fail "ceph-mon did not answer"
step "mon up"

# One OSD whose object store lives in memory (8 GiB; a restart loses the data).
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(ceph_ osd new "$OSD_UUID")
mkdir -p "$BASE/osd/ceph-$OSD_ID"  # memstore's mkfs aborts without it
LOGS=("$L/osd-mkfs.out" "$L/osd.out" "$L/osd.$OSD_ID.log" "$L/mon.a.log")
start ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$L/osd-mkfs.out" 2>&1
start ceph-osd -c "$CONF" -i "$OSD_ID" </dev/null >"$L/osd.out" 2>&1
osd_up() { ceph_ osd stat | grep -q " 1 up"; }
wait_for --pid "$(pid_in "$BASE/run/osd.$OSD_ID.pid")" ceph-osd "$WAIT" osd_up ||
  fail "ceph-osd did not come up"
step "osd up"

# The gateway; its first start creates its pools.
LOGS=("$L/radosgw.out" "$L/client.rgw.a.log" "$L/osd.$OSD_ID.log")
start radosgw -c "$CONF" -n client.rgw.a </dev/null >"$L/radosgw.out" 2>&1
rgw_up() { curl -sf -o /dev/null --max-time 2 "$ENDPOINT/"; }
wait_for --pid "$(pid_in "$BASE/run/client.rgw.a.pid")" radosgw "$WAIT" rgw_up ||
  fail "radosgw did not answer on $ENDPOINT"
step "rgw serving"

# Users: tester (the tests' S3 user) and admin (IAM: roles, OIDC providers).
LOGS=("$L/client.admin.log" "$L/client.rgw.a.log")
rgwadmin user create --uid=tester --display-name=Tester \
  --access-key="$TESTER_AK" --secret-key="$TESTER_SK" >/dev/null
rgwadmin user create --uid=admin --display-name=Admin \
  --access-key="$ADMIN_AK" --secret-key="$ADMIN_SK" >/dev/null
rgwadmin caps add --uid=admin --caps="roles=*;oidc-provider=*;users=*;buckets=*" >/dev/null

# Roles: S3Access (tester may AssumeRole it), WebRole (web identity from our OIDC provider).
policy() { echo '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'"$1"'}]}'; }
S3ALL=$(policy '"Action":["s3:*"],"Resource":"arn:aws:s3:::*"')
rgwadmin role create --role-name=S3Access --path=/app/ --assume-role-policy-doc="$(policy \
  '"Principal":{"AWS":["arn:aws:iam:::user/tester"]},"Action":["sts:AssumeRole"]')" >/dev/null
rgwadmin role-policy put --role-name=S3Access --policy-name=s3all --policy-doc="$S3ALL" >/dev/null
rgwadmin role create --role-name=WebRole --assume-role-policy-doc="$(policy \
  '"Principal":{"Federated":["arn:aws:iam:::oidc-provider/127.0.0.1:'"$OIDC_PORT"'"]},"Action":["sts:AssumeRoleWithWebIdentity"]')" >/dev/null
rgwadmin role-policy put --role-name=WebRole --policy-name=s3all --policy-doc="$S3ALL" >/dev/null
# The ARNs exactly as RGW reports them (S3Access: arn:aws:iam:::role/app/S3Access).
role_arn() {
  local out
  out=$(rgwadmin role get --role-name="$1")
  jq -er '.Arn' <<<"$out" || { echo "no .Arn in 'role get $1' output: $out" >&2; return 1; }
}
ROLE_ARN=$(role_arn S3Access)
WEB_ROLE_ARN=$(role_arn WebRole)
step "users + roles created"

# The env file; written under another name and renamed once the server passed the check.
write_env "$BASE/env.partial" \
  STOWAGE_S3_TEST_ENDPOINT="$ENDPOINT" \
  STOWAGE_S3_TEST_ACCESS_KEY="$TESTER_AK" \
  STOWAGE_S3_TEST_SECRET_KEY="$TESTER_SK" \
  STOWAGE_S3_TEST_BUCKET="$BUCKET" \
  STOWAGE_S3_TEST_REGION=us-east-1 \
  STOWAGE_S3_TEST_SERVER=rgw \
  STOWAGE_STS_TEST_ENDPOINT="$ENDPOINT" \
  STOWAGE_STS_TEST_ROLE_ARN="$ROLE_ARN" \
  STOWAGE_STS_TEST_WEB_ROLE_ARN="$WEB_ROLE_ARN" \
  STOWAGE_RGW_ADMIN_ACCESS_KEY="$ADMIN_AK" \
  STOWAGE_RGW_ADMIN_SECRET_KEY="$ADMIN_SK" \
  STOWAGE_RGW_CONF="$CONF"

# The test bucket, owned by tester; then the smoke check.
LOGS=("$L/client.rgw.a.log")
(source "$BASE/env.partial" && "$PY" - <<'EOF') || fail "could not create the test bucket"
import os, boto3
from botocore.config import Config
e = os.environ
s3 = boto3.client("s3", endpoint_url=e["STOWAGE_S3_TEST_ENDPOINT"], region_name=e["STOWAGE_S3_TEST_REGION"],
                  aws_access_key_id=e["STOWAGE_S3_TEST_ACCESS_KEY"], aws_secret_access_key=e["STOWAGE_S3_TEST_SECRET_KEY"],
                  config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=30))
s3.create_bucket(Bucket=e["STOWAGE_S3_TEST_BUCKET"])
EOF
(source "$BASE/env.partial" && "$PY" "$HERE/check-s3.py") || fail "smoke check failed"
step "bucket + smoke check"

# The OIDC identity provider WebRole trusts: serve its keys, register it in IAM.
LOGS=("$L/oidc.log" "$L/client.rgw.a.log")
OIDC_STATE=$BASE/oidc
OIDC=("$PY" "$HERE/oidc_idp.py")
"${OIDC[@]}" thumb --state "$OIDC_STATE" >/dev/null
setsid "${OIDC[@]}" serve --state "$OIDC_STATE" --port "$OIDC_PORT" </dev/null >"$L/oidc.log" 2>&1 &
echo $! >"$BASE/run/oidc.pid"
oidc_up() { curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$OIDC_PORT/.well-known/openid-configuration"; }
wait_for --pid "$(cat "$BASE/run/oidc.pid")" "OIDC provider" "$WAIT" oidc_up || fail "OIDC provider did not answer"
(source "$BASE/env.partial" && "${OIDC[@]}" register --state "$OIDC_STATE" --port "$OIDC_PORT" \
  --endpoint "$ENDPOINT" --client-id stowage-test >"$L/oidc-register.out") || fail "could not register the OIDC provider"
write_env "$BASE/env.oidc" STOWAGE_OIDC_STATE="$OIDC_STATE" STOWAGE_OIDC_PORT="$OIDC_PORT" \
  STOWAGE_OIDC_SCRIPT="$HERE/oidc_idp.py" STOWAGE_OIDC_CLIENT_ID=stowage-test
cat "$BASE/env.oidc" >>"$BASE/env.partial"
mv "$BASE/env.partial" "$BASE/env"
step "oidc provider registered"

trap - ERR
echo "rgw-up: ready at $ENDPOINT (pids mon=$(cat "$BASE/run/mon.a.pid")" \
  "osd=$(cat "$BASE/run/osd.$OSD_ID.pid") rgw=$(cat "$BASE/run/client.rgw.a.pid")); env: $BASE/env"
