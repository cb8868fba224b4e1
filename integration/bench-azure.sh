#!/usr/bin/env bash
# Starts Azurite on 127.0.0.1 and measures stowage's Azure driver
# (integration/src/bin/azure_bench.rs, release build) against Azure's
# Python SDK, azure-storage-blob (integration/bench/azure_python.py, in a
# venv of its own), interleaved over several rounds: a file of --size-mib
# MiB written, the blob read as a stream, and downloaded to a file. Each
# transfer runs in a process of its own under GNU time, for its peak RSS.
# Prints every round's MiB/s, then markdown tables: the median of the
# per-round ratios (stowage / Python) and each contender's peak RSS.
#
#   integration/bench-azure.sh [--rounds N] [--size-mib M]    (3, 512)
#
# STOWAGE_AZURITE_PORT picks Azurite's port (default: a free one);
# STOWAGE_BENCH_VENV the venv (default $STOWAGE_TOOLS_DIR/azure-bench-venv,
# /opt/stowage-ci, created once); CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
source integration/bench-lib.sh

usage() { echo "usage: $0 [--rounds N] [--size-mib M]" >&2; exit 2; }
rounds=3
size_mib=512
while (($#)); do
  case $1 in
    --rounds) rounds=${2:-}; shift 2 || usage ;;
    --size-mib) size_mib=${2:-}; shift 2 || usage ;;
    *) usage ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ && $size_mib =~ ^[1-9][0-9]*$ ]] || usage
bytes=$((size_mib * 1024 * 1024))

# What this benchmark needs: Azurite (install.sh), GNU time, and
# azure-storage-blob in a venv.
STOWAGE_INSTALL_SKIP="garage cargo-audit" integration/servers/install.sh >/dev/null
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
apt_install() {
  echo "bench-azure: apt-get install $*"
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}
[ -x /usr/bin/time ] || apt_install time
TOOLS=${STOWAGE_TOOLS_DIR:-/opt/stowage-ci}
PY=${PYTHON:-python3}
venv=${STOWAGE_BENCH_VENV:-$TOOLS/azure-bench-venv}
vpy=$venv/bin/python
if ! "$vpy" -c 'import azure.storage.blob' 2>/dev/null; then
  if [ ! -x "$vpy" ]; then
    mkdir -p "$(dirname "$venv")"
    # Debian's python3 makes venvs only with python3-venv installed.
    "$PY" -m venv "$venv" 2>/dev/null || { apt_install python3-venv; "$PY" -m venv --clear "$venv"; }
  fi
  echo "bench-azure: pip install azure-storage-blob (into $venv)"
  "$vpy" -m pip install --quiet --disable-pip-version-check 'azure-storage-blob>=12,<13'
fi
pyscript=integration/bench/azure_python.py

cargo build --release -p stowage-integration --bin azure_bench
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/azure_bench")

work=$(mktemp -d /tmp/stowage-bench-azure.XXXXXX)
azurite=$work/azurite
trap 'integration/servers/azurite-down.sh "$azurite" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
STOWAGE_AZURITE_PORT=${STOWAGE_AZURITE_PORT:-$(free_port)} \
  integration/servers/azurite-up.sh "$azurite" >"$work/azurite-up.log" 2>&1 ||
  { cat "$work/azurite-up.log" >&2; exit 1; }
set -a; . "$azurite/env"; set +a

input=$work/input.bin
output=$work/output.bin
head -c "$bytes" /dev/urandom >"$input"

# measure CMD...: runs one transfer in a process of its own under GNU time,
# after writing back dirty pages (so no contender pays for the one before);
# sets $secs (the transfer's own timing, from its `BYTES SECONDS` line) and
# $rss (the process's peak RSS, MiB).
measure() {
  sync
  if ! /usr/bin/time -f %M -o "$work/rss" "$@" >"$work/stdout" 2>"$work/stderr"; then
    echo "bench-azure: failed: $*" >&2
    cat "$work/stderr" >&2
    exit 1
  fi
  local line moved
  line=$(tail -n 1 "$work/stdout")
  moved=${line%% *}
  secs=${line#* }
  if [ "$moved" != "$bytes" ]; then
    echo "bench-azure: $* moved ${moved:-nothing} bytes, expected $bytes" >&2
    exit 1
  fi
  rss=$(awk 'END { printf "%.0f", $1 / 1024 }' "$work/rss")
}

# The contenders, in the order of the tables; run_* NUMBER runs one.
# Every reader reads the blob the stowage writer wrote in the same round.
prefix=stowage-bench-azure
blob=$prefix/stowage
writers=("stowage" "stowage, Content-MD5 off" "upload_blob" "upload_blob, max_concurrency=8")
readers=("stowage get (stream)" "download_blob().readinto(/dev/null)" "readinto(/dev/null), max_concurrency=8")
getters=("stowage download_to_file" "download_blob().readinto(file)" "readinto(file), max_concurrency=8")
run_writer() {
  case $1 in
    0) measure "$bin" write "$input" "$blob" ;;
    1) measure "$bin" write "$input" "$prefix/stowage-no-md5" --no-content-md5 ;;
    2) measure "$vpy" "$pyscript" upload "$input" "$prefix/python" default ;;
    3) measure "$vpy" "$pyscript" upload "$input" "$prefix/python-8" 8 ;;
  esac
}
run_reader() {
  case $1 in
    0) measure "$bin" read "$blob" ;;
    1) measure "$vpy" "$pyscript" read "$blob" default ;;
    2) measure "$vpy" "$pyscript" read "$blob" 8 ;;
  esac
}
run_getter() {
  rm -f "$output"
  case $1 in
    0) measure "$bin" get "$blob" "$output" ;;
    1) measure "$vpy" "$pyscript" get "$blob" "$output" default ;;
    2) measure "$vpy" "$pyscript" get "$blob" "$output" 8 ;;
  esac
  # The first round checks every byte of every download.
  if [ "$round" -eq 0 ] && ! cmp -s "$input" "$output"; then
    echo "bench-azure: ${getters[$1]}: the file differs from what was written" >&2
    exit 1
  fi
  rm -f "$output"
}

# join WORD...: the words separated by " / ".
join() {
  local out=$1 w
  shift
  for w in "$@"; do out+=" / $w"; done
  echo "$out"
}
rate() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }
# median NUMBER...
median() {
  printf '%s\n' "$@" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# ratio KIND OURS THEIRS: the median over rounds of THEIRS' seconds / OURS'
# (throughput of OURS over THEIRS), KIND w, r or g.
ratio() {
  local i r=() ours theirs
  for ((i = 0; i < rounds; i++)); do
    ours=${times["$1$2:$i"]}
    theirs=${times["$1$3:$i"]}
    r+=("$(awk -v a="$theirs" -v b="$ours" 'BEGIN { print a / b }')")
  done
  printf '%.2fx' "$(median "${r[@]}")"
}

declare -A times peak
stowage_line=$("$bin" describe)
python_line=$("$vpy" "$pyscript" describe)
azurite_version=$(cd "$TOOLS/azurite" 2>/dev/null && node -p 'require("azurite/package.json").version' 2>/dev/null || echo "?")
echo "object $size_mib MiB; rounds: $rounds; Azurite $azurite_version at $STOWAGE_AZURE_TEST_ACCOUNT_URL"
echo "$stowage_line"
echo "$python_line"
rows=()
for ((round = 0; round < rounds; round++)); do
  cells=()
  # Rotate the order so no contender always goes first.
  for kind in w r g; do
    case $kind in
      w) names=("${writers[@]}"); run=run_writer ;;
      r) names=("${readers[@]}"); run=run_reader ;;
      g) names=("${getters[@]}"); run=run_getter ;;
    esac
    n=${#names[@]}
    for ((slot = 0; slot < n; slot++)); do
      which=$(((slot + round) % n))
      "$run" "$which"
      times["$kind$which:$round"]=$secs
      if ((rss > ${peak["$kind$which"]:-0})); then peak["$kind$which"]=$rss; fi
    done
    if [ "$kind" = w ]; then
      # Blobs no reader needs go at once: Azurite keeps every blob on disk.
      "$bin" delete "$prefix/stowage-no-md5" "$prefix/python" "$prefix/python-8"
    fi
    mibs=()
    for ((which = 0; which < n; which++)); do mibs+=("$(rate "${times["$kind$which:$round"]}")"); done
    cells+=("$(join "${mibs[@]}")")
  done
  "$bin" delete "$blob"
  echo "round $((round + 1)): write MiB/s ${cells[0]}; read MiB/s ${cells[1]}; to a file MiB/s ${cells[2]}"
  rows+=("| $((round + 1)) | ${cells[0]} | ${cells[1]} | ${cells[2]} |")
done

echo
echo "Per round, MiB/s (writers: $(join "${writers[@]}"); readers: $(join "${readers[@]}"); to a file: $(join "${getters[@]}")):"
echo
echo "| round | write | read | to a file |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Median of the per-round throughput ratios, stowage / Python:"
echo
echo "| figure | ratio | target |"
echo "|---|---|---|"
echo "| write, stowage vs upload_blob (default max_concurrency) | $(ratio w 0 2) | at least 1.0x |"
echo "| write, stowage vs upload_blob, max_concurrency=8 | $(ratio w 0 3) | |"
echo "| write, stowage with Content-MD5 off vs upload_blob (default) | $(ratio w 1 2) | |"
echo "| write, stowage default vs Content-MD5 off | $(ratio w 0 1) | |"
echo "| read, stowage stream vs readinto(/dev/null) (default max_concurrency) | $(ratio r 0 1) | at least 1.0x |"
echo "| read, stowage stream vs readinto(/dev/null), max_concurrency=8 | $(ratio r 0 2) | |"
echo "| to a file, download_to_file vs readinto(file) (default max_concurrency) | $(ratio g 0 1) | at least 1.0x |"
echo "| to a file, download_to_file vs readinto(file), max_concurrency=8 | $(ratio g 0 2) | |"
echo
echo "Peak RSS of each contender's process (GNU time), the maximum over rounds:"
echo
echo "| contender | write | read | to a file |"
echo "|---|---|---|---|"
echo "| stowage | ${peak[w0]} MiB (Content-MD5 off: ${peak[w1]} MiB) | ${peak[r0]} MiB | ${peak[g0]} MiB |"
echo "| Python, default max_concurrency | ${peak[w2]} MiB | ${peak[r1]} MiB | ${peak[g1]} MiB |"
echo "| Python, max_concurrency=8 | ${peak[w3]} MiB | ${peak[r2]} MiB | ${peak[g2]} MiB |"
