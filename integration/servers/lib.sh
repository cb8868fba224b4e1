# Helpers shared by the server scripts in this directory. Sourced, never run.

# Name for messages, e.g. "rgw-up.sh".
ME=${0##*/}

# Milliseconds since the epoch, and the script's start time.
now_ms() { date +%s%3N; }
T0=$(now_ms)

# step NAME: print how long the script has been running.
step() {
  local ms=$(($(now_ms) - T0))
  printf '  %-26s %3d.%03ds\n' "$1" $((ms / 1000)) $((ms % 1000))
}

# wait_for [--pid PID] DESC SECONDS CMD...: retry CMD every 0.2 s until it
# succeeds. Returns 1 (after saying why) when SECONDS have passed, or at once
# when process PID (the server being waited for) has exited.
wait_for() {
  local pid=
  if [ "$1" = --pid ]; then pid=$2; shift 2; fi
  local desc=$1 limit=$2
  shift 2
  local deadline=$(($(now_ms) + limit * 1000))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! alive "$pid"; then
      echo "$ME: $desc exited while starting" >&2
      return 1
    fi
    if (($(now_ms) >= deadline)); then
      echo "$ME: timed out after ${limit}s waiting for $desc" >&2
      return 1
    fi
    sleep 0.2
  done
}

# require_free_ports PORT...: fail when something already listens on 127.0.0.1:PORT
# (a leftover server would otherwise be tested instead of ours).
require_free_ports() {
  local port
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$ME: port 127.0.0.1:$port is already in use (leftover server? set the port variables)" >&2
      return 1
    fi
  done
}

# prepare_base DIR MARKER: make DIR (absolute, empty) the state directory and set BASE.
# MARKER is a file that lets the down-script know it may delete DIR.
prepare_base() {
  mkdir -p "$1"
  BASE=$(cd "$1" && pwd)
  if [ -n "$(ls -A "$BASE")" ]; then
    echo "$ME: $BASE is not empty; give a fresh directory (e.g. \$(mktemp -d))" >&2
    return 1
  fi
  touch "$BASE/$2"
}

# pid_in FILE: the pid in FILE, or nothing if there is none yet.
pid_in() { cat "$1" 2>/dev/null || true; }

# tail_logs FILE...: print the last 50 lines of each non-empty file.
tail_logs() {
  local f
  for f in "$@"; do
    [ -s "$f" ] || continue
    echo "----- last 50 lines of $f -----" >&2
    tail -n 50 "$f" >&2
  done
}

# is_ours PID MARKER: the process is alive and its command line contains MARKER
# (our config file path), so a pid reused by another process is never killed.
is_ours() {
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

# alive PID: the process exists and is not a zombie.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }  # the state letter follows the command name in parentheses
  [ "${stat:0:1}" != Z ]
}

# stop_pidfiles MARKER PIDFILE...: SIGTERM each of our processes, wait up to
# 10 s for all of them to be gone, then SIGKILL whatever is left.
stop_pidfiles() {
  local marker=$1 f pid i pids=()
  shift
  for f in "$@"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] && is_ours "$pid" "$marker" || continue
    kill "$pid" 2>/dev/null && pids+=("$pid")
  done
  for ((i = 0; i < 50; i++)); do
    local left=()
    for pid in "${pids[@]}"; do alive "$pid" && left+=("$pid"); done
    pids=("${left[@]}")
    ((${#pids[@]})) || return 0
    sleep 0.2
  done
  echo "$ME: still running after 10 s, sending SIGKILL: ${pids[*]}" >&2
  kill -9 "${pids[@]}" 2>/dev/null || true
  for ((i = 0; i < 25; i++)); do  # and give the kernel a moment to reap them
    sleep 0.2
    for pid in "${pids[@]}"; do alive "$pid" && continue 2; done
    return 0
  done
}

# stop_ceph BASE: stop the daemons of the cluster in BASE (only processes whose
# command line names BASE/ceph.conf), one kind after the other, each while what
# it talks to still runs: radosgw hangs without its OSD, and an OSD waits 5 s
# to tell a vanished monitor that it leaves.
stop_ceph() {
  stop_pidfiles "$1/ceph.conf" "$1"/run/client.rgw.*.pid
  stop_pidfiles "$1/ceph.conf" "$1"/run/osd.*.pid
  stop_pidfiles "$1/ceph.conf" "$1"/run/*.pid
}

# remove_base DIR MARKER: delete DIR, but only if an up-script made it.
remove_base() {
  [ -e "$1" ] || return 0
  if [ -f "$1/$2" ]; then
    rm -rf -- "$1"
  else
    echo "$ME: not removing $1: it has no $2, so no up-script made it" >&2
    return 1
  fi
}

# write_env FILE NAME=VALUE...: write `export NAME=VALUE` lines (shell-quoted).
write_env() {
  local file=$1 kv
  shift
  : >"$file"
  for kv in "$@"; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}" >>"$file"; done
}
