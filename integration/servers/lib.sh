# Helpers shared by the server scripts in this directory. Sourced, never run.

# Milliseconds since the epoch, and the script's start time.
now_ms() { date +%s%3N; }
T0=$(now_ms)

# step NAME: print how long the script has been running.
step() {
  local ms=$(($(now_ms) - T0))
  printf '  %-26s %3d.%03ds\n' "$1" $((ms / 1000)) $((ms % 1000))
}

# wait_for DESC SECONDS CMD...: retry CMD every 0.2 s until it succeeds.
# Returns 1 (after saying so) when SECONDS have passed.
wait_for() {
  local desc=$1 limit=$2
  shift 2
  local deadline=$(($(now_ms) + limit * 1000))
  until "$@" >/dev/null 2>&1; do
    if (($(now_ms) >= deadline)); then
      echo "timed out after ${limit}s waiting for $desc" >&2
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
      echo "port 127.0.0.1:$port is already in use (leftover server? set the port variables)" >&2
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
    echo "$BASE is not empty; give a fresh directory (e.g. \$(mktemp -d))" >&2
    return 1
  fi
  touch "$BASE/$2"
}

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

# stop_pidfiles MARKER PIDFILE...: SIGTERM each of our processes, wait up to
# 10 s for all of them to exit, then SIGKILL whatever is left.
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
    local alive=()
    for pid in "${pids[@]}"; do is_ours "$pid" "$marker" && alive+=("$pid"); done
    pids=("${alive[@]}")
    ((${#pids[@]})) || return 0
    sleep 0.2
  done
  echo "still running after 10 s, sending SIGKILL: ${pids[*]}" >&2
  kill -9 "${pids[@]}" 2>/dev/null || true
}

# remove_base DIR MARKER: delete DIR, but only if an up-script made it.
remove_base() {
  [ -e "$1" ] || return 0
  if [ -f "$1/$2" ]; then
    rm -rf -- "$1"
  else
    echo "not removing $1: it has no $2, so no up-script made it" >&2
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
