#!/usr/bin/env bash
# compare.sh — nginx, haproxy and weir (plain, and with the four built-in filters chained) as
# HTTP/1.1 reverse proxies to ONE upstream (issue 6, point 4).
#
# Each proxy runs one worker/thread pinned to CPU 0 (nginx worker_processes 1, haproxy
# nbthread 1, weir --workers 1); the upstream (an nginx returning a small static 200) and the load
# generator (wrk, keep-alive, sends `x-api-key: bench-key` to every proxy) share CPU 1. Rounds are
# interleaved (every proxy once per round, the order rotating). Reported per proxy, as the median
# of the rounds:
#   - requests/s and p99 latency (wrk --latency),
#   - proxy CPU µs per request: utime+stime delta of the proxy process (and its children) from
#     /proc/<pid>/stat divided by the number of requests wrk completed,
# and the ratios to plain weir. Markdown table on stdout; JSON in
# $CARGO_TARGET_DIR/bench/<--out, default compare.json>.
#
# weir-chain runs auth (API key, the key wrk sends), rate_limit (global bucket of 10^9/s),
# header_rewrite (request set + remove, response set) and fault (0 % delay, 0 % abort), each its
# own module and VM. weir-shared runs the same four filters with the same configs from ONE
# module, target/filters/policies.wasm (the policy picked by root_id), in one VM group
# (vm_id: policies): one instance per worker instead of four (DESIGN.md §5).
# Optional variants (not run unless named in --proxies), to see where a chain's cost goes:
# weir-noop chains four no-op modules (every callback returns at once, no hostcall: the host's
# own cost of four filters), weir-auth, weir-rate_limit, weir-header_rewrite and weir-fault
# run one built-in filter each, with the config above.
# nginx and haproxy add the proxy hygiene weir does by default (x-forwarded-for/-proto,
# x-request-id); access logs are off everywhere. Each proxy must return the upstream's body
# before anything is measured.
#
# Usage: benches/compare.sh [--duration 10] [--connections 32] [--rounds 3]
#                           [--proxies "nginx haproxy weir weir-chain weir-shared"] [--out compare.json or /abs/path.json]
#                           (more --proxies: weir-noop weir-auth weir-rate_limit weir-header_rewrite weir-fault)
#                           [--no-build] [--weir-bin PATH]
# Env:   (default ports sit below the kernel's ephemeral range, so no outgoing connection holds
#        them) UPSTREAM_PORT (28180) NGINX_PORT (28181) WEIR_PORT (28182) HAPROXY_PORT (28183)
#        WEIR_CHAIN_PORT (28184) WEIR_SHARED_PORT (28185) WEIR_NOOP_PORT (28186) and the
#        one-filter variants on 28187-28190 (WEIR_ONE_PORT, the first of them) CARGO_TARGET_DIR
# Needs: Debian/Ubuntu (apt-get installs nginx, haproxy, wrk when missing), 2+ CPUs, cargo.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR=$TARGET/bench
OUT_NAME=compare.json
DURATION=10
CONNECTIONS=32
ROUNDS=3
PROXIES="nginx haproxy weir weir-chain weir-shared"
BUILD=1
WEIR_BIN=""
UPSTREAM_PORT=${UPSTREAM_PORT:-28180}
NGINX_PORT=${NGINX_PORT:-28181}
WEIR_PORT=${WEIR_PORT:-28182}
HAPROXY_PORT=${HAPROXY_PORT:-28183}
WEIR_CHAIN_PORT=${WEIR_CHAIN_PORT:-28184}
WEIR_SHARED_PORT=${WEIR_SHARED_PORT:-28185}
WEIR_NOOP_PORT=${WEIR_NOOP_PORT:-28186}
WEIR_ONE_PORT=${WEIR_ONE_PORT:-28187}
API_KEY=bench-key

# The weir variants: the filters each chains (see filter_yaml), how they are loaded (modules:
# each filter its own module and VM; shared: policies.wasm, one VM group) and the port.
WEIR_VARIANTS="weir weir-chain weir-shared weir-noop weir-auth weir-rate_limit weir-header_rewrite weir-fault"
declare -A CHAIN MODE PORT PID
CHAIN[weir]="" MODE[weir]=modules PORT[weir]=$WEIR_PORT
CHAIN[weir-chain]="auth limit headers fault" MODE[weir-chain]=modules PORT[weir-chain]=$WEIR_CHAIN_PORT
CHAIN[weir-shared]="auth limit headers fault" MODE[weir-shared]=shared PORT[weir-shared]=$WEIR_SHARED_PORT
CHAIN[weir-noop]="noop1 noop2 noop3 noop4" MODE[weir-noop]=modules PORT[weir-noop]=$WEIR_NOOP_PORT
CHAIN[weir-auth]="auth" MODE[weir-auth]=modules PORT[weir-auth]=$WEIR_ONE_PORT
CHAIN[weir-rate_limit]="limit" MODE[weir-rate_limit]=modules PORT[weir-rate_limit]=$((WEIR_ONE_PORT + 1))
CHAIN[weir-header_rewrite]="headers" MODE[weir-header_rewrite]=modules PORT[weir-header_rewrite]=$((WEIR_ONE_PORT + 2))
CHAIN[weir-fault]="fault" MODE[weir-fault]=modules PORT[weir-fault]=$((WEIR_ONE_PORT + 3))
PORT[nginx]=$NGINX_PORT PORT[haproxy]=$HAPROXY_PORT

usage() { sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=${2%s}; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --proxies|--only) PROXIES=$2; shift 2 ;;
    --out) OUT_NAME=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --weir-bin) WEIR_BIN=$2; BUILD=0; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "compare: unknown argument $1" >&2; usage 1 ;;
  esac
done
for p in $PROXIES; do
  [[ -v "PORT[$p]" ]] || { echo "compare: unknown proxy $p (nginx haproxy $WEIR_VARIANTS)" >&2; exit 1; }
done
has() { [[ " $PROXIES " == *" $1 "* ]]; }
# Whether any weir variant is to run, and whether one running built-in filters is.
has_weir() { [[ " $PROXIES " == *" weir"* ]]; }
has_builtin() {
  local p
  for p in $PROXIES; do [[ -n ${CHAIN[$p]:-} && ${CHAIN[$p]} != noop* ]] && return 0; done
  return 1
}

log() { echo "compare: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools (idempotent: apt-get only for what is missing, `update` once) -------------------------
need_install=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_install+=(nginx) # upstream too
if has haproxy; then command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_install+=(haproxy); fi
command -v wrk >/dev/null 2>&1 || need_install+=(wrk)
command -v taskset >/dev/null 2>&1 || need_install+=(util-linux)
command -v curl >/dev/null 2>&1 || need_install+=(curl)
if [ ${#need_install[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  log "installing ${need_install[*]} (apt-get)"
  # policy-rc.d in containers stops the packages from starting system daemons; elsewhere the
  # packaged services are left as the distribution configures them.
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
    --no-install-recommends "${need_install[@]}" >/dev/null
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy 2>/dev/null || echo /usr/sbin/haproxy)
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (proxy on CPU 0, load + upstream on CPU 1)"

# --- weir binary and filters --------------------------------------------------------------------
if has_weir; then
  if [ -z "$WEIR_BIN" ]; then
    WEIR_BIN=$TARGET/perf/weir
    if [ "$BUILD" = 1 ]; then
      log "building weir (cargo build --profile perf -p weir: release with fat LTO, one codegen unit)"
      (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --profile perf -p weir --quiet)
    fi
  fi
  [ -x "$WEIR_BIN" ] || die "no weir binary at $WEIR_BIN"
fi
FILTERS=$TARGET/filters
if has_builtin; then
  for f in auth rate_limit header_rewrite fault policies; do
    if [ ! -f "$FILTERS/$f.wasm" ]; then
      log "building the built-in filters (scripts/build-filters.sh)"
      (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET scripts/build-filters.sh >&2)
      break
    fi
  done
  for f in auth rate_limit header_rewrite fault policies; do
    [ -f "$FILTERS/$f.wasm" ] || die "no $FILTERS/$f.wasm (scripts/build-filters.sh)"
  done
fi

# --- scratch dir, cleanup -----------------------------------------------------------------------
WORK=$(mktemp -d /tmp/weir-compare.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The fixed ports (whoever runs) and those of the proxies named.
ports="$UPSTREAM_PORT $NGINX_PORT $WEIR_PORT $HAPROXY_PORT $WEIR_CHAIN_PORT $WEIR_SHARED_PORT"
for name in $PROXIES; do ports+=" ${PORT[$name]}"; done
for p in $(tr ' ' '\n' <<<"$ports" | sort -un); do
  port_free "$p" || die "port $p is in use (set UPSTREAM_PORT / NGINX_PORT / WEIR_PORT / HAPROXY_PORT / WEIR_CHAIN_PORT / WEIR_SHARED_PORT / WEIR_NOOP_PORT / WEIR_ONE_PORT)"
done

# Waits until 127.0.0.1:$1 answers HTTP 200 (at most ~10 s).
wait_http() {
  local i
  for i in $(seq 1 100); do
    if curl -fsS -o /dev/null --max-time 1 -H "x-api-key: $API_KEY" "http://127.0.0.1:$1/" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

nginx_common() {
  cat <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $WORK/$1.pid;
error_log $WORK/$1-error.log warn;
events { worker_connections 4096; multi_accept on; }
EOF
}

# --- upstream (CPU 1) ---------------------------------------------------------------------------
{
  nginx_common upstream
  cat <<EOF
http {
  access_log off;
  client_body_temp_path $WORK/up-body;
  proxy_temp_path $WORK/up-proxy;
  fastcgi_temp_path $WORK/up-fcgi;
  uwsgi_temp_path $WORK/up-uwsgi;
  scgi_temp_path $WORK/up-scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$UPSTREAM_PORT reuseport backlog=4096;
    default_type text/plain;
    location / { return 200 "hello from the upstream\n"; }
  }
}
EOF
} >"$WORK/upstream.conf"
taskset -c 1 "$NGINX" -p "$WORK/" -c "$WORK/upstream.conf" -e "$WORK/upstream-error.log" &
PIDS+=($!)
wait_http "$UPSTREAM_PORT" || die "upstream did not start: $(cat "$WORK"/upstream-error.log 2>/dev/null)"

# --- proxy configs ------------------------------------------------------------------------------
{
  nginx_common proxy
  cat <<EOF
http {
  access_log off;
  client_body_temp_path $WORK/px-body;
  proxy_temp_path $WORK/px-proxy;
  fastcgi_temp_path $WORK/px-fcgi;
  uwsgi_temp_path $WORK/px-uwsgi;
  scgi_temp_path $WORK/px-scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  upstream up {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive 64;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Request-Id \$request_id;
    }
  }
}
EOF
} >"$WORK/nginx.conf"

cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8192
  pidfile $WORK/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  unique-id-format %{+X}o%ci%cp%fi%fp%Ts%rt%pid
  unique-id-header X-Request-Id
  default_backend be
backend be
  server up 127.0.0.1:$UPSTREAM_PORT
EOF

# module_line MODULE MODE → a filter's module (in the shared mode: policies.wasm, MODULE as its
# root_id, in the VM group "policies").
module_line() {
  if [ "$2" = shared ]; then
    printf '    module: %s\n    root_id: %s\n    vm_id: policies\n' "$FILTERS/policies.wasm" "$1"
  else
    printf '    module: %s\n' "$FILTERS/$1.wasm"
  fi
}

# filter_yaml NAME MODE → one entry of `filters:` (auth limit headers fault, or noop*).
filter_yaml() {
  case $1 in
    auth)
      echo "  - name: auth"; module_line auth "$2"
      echo "    config: { api_keys: { header: x-api-key, keys: { \"$API_KEY\": bench } } }" ;;
    limit)
      echo "  - name: limit"; module_line rate_limit "$2"
      echo "    config: { rate: 1000000000, per: second, key: global }" ;;
    headers)
      echo "  - name: headers"; module_line header_rewrite "$2"
      echo "    config:"
      echo "      request: { set: { x-env: bench }, remove: [x-debug] }"
      echo "      response: { set: { x-proxied-by: weir } }" ;;
    fault)
      echo "  - name: fault"; module_line fault "$2"
      echo "    config: { delay: { fixed: 200ms, percent: 0 }, abort: { status: 503, percent: 0 }, header_override: false }" ;;
    noop*)
      echo "  - name: $1"
      echo "    module: $WORK/noop.wat" ;;
  esac
}

# weir_yaml PORT MODE [FILTER...] → a weir config on PORT chaining FILTERs (see filter_yaml);
# MODE: modules (each filter its own module and VM) or shared (policies.wasm, one VM group).
weir_yaml() {
  local port=$1 mode=$2 f
  shift 2
  echo 'access_log: { path: "off" }'
  cat <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:$port
EOF
  [ $# -gt 0 ] && echo "    filters: [$(echo "$*" | sed 's/ /, /g')]"
  cat <<EOF
    routes:
      - match: { path_prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:$UPSTREAM_PORT]
EOF
  [ $# -gt 0 ] || return 0
  echo "filters:"
  for f in "$@"; do filter_yaml "$f" "$mode"; done
}

# The no-op filter of weir-noop: every callback returns at once, no hostcall; it declares
# request_headers and response_headers, so a request makes the same host<->guest trips as
# through the built-in chain (create, request headers, response headers, delete per filter).
cat >"$WORK/noop.wat" <<'EOF'
(module
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 8192))
  (@custom "weir.callbacks" "request_headers response_headers")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_delete") (param i32))
)
EOF

# --- start the proxies (CPU 0) ------------------------------------------------------------------
for name in $PROXIES; do
  case $name in
    # shellcheck disable=SC2086 # the chain is a list of words
    weir*) weir_yaml "${PORT[$name]}" "${MODE[$name]}" ${CHAIN[$name]} >"$WORK/$name.yaml" ;;
  esac
done

start_weir() { # start_weir NAME
  local name=$1 ready=0
  : >"$WORK/$name.out"
  taskset -c 0 "$WEIR_BIN" run --config "$WORK/$name.yaml" --workers 1 >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PID[$name]=$!
  PIDS+=("${PID[$name]}")
  for _ in $(seq 1 600); do
    if grep -q '"event":"ready"' "$WORK/$name.out" 2>/dev/null; then ready=1; break; fi
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  [ "$ready" = 1 ] || die "$name did not print {\"event\":\"ready\"}: $(tail -n 20 "$WORK/$name.err" 2>/dev/null)"
}

for name in $PROXIES; do
  case $name in
    nginx)
      taskset -c 0 "$NGINX" -p "$WORK/" -c "$WORK/nginx.conf" -e "$WORK/proxy-error.log" &
      PID[nginx]=$! ;;
    haproxy)
      "$HAPROXY" -c -q -f "$WORK/haproxy.cfg" || die "haproxy rejected its config"
      taskset -c 0 "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.out" 2>&1 &
      PID[haproxy]=$! ;;
    weir*) start_weir "$name" ;;
  esac
  PIDS+=("${PID[$name]}")
  wait_http "${PORT[$name]}" || die "$name does not answer 200 on port ${PORT[$name]}"
done

# Each proxy must really forward to the upstream (not answer by itself).
for name in $PROXIES; do
  body=$(curl -fsS --max-time 5 -H "x-api-key: $API_KEY" "http://127.0.0.1:${PORT[$name]}/bench" || true)
  [ "$body" = "hello from the upstream" ] || die "$name did not return the upstream's body (got: ${body:0:200})"
done
for chain in $PROXIES; do
  [[ $chain == weir* ]] || continue
  # ... and the filters really run: no key → 401 from auth; the response header from
  # header_rewrite; x-ratelimit-limit from rate_limit.
  if [[ " ${CHAIN[$chain]} " == *" auth "* ]]; then
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:${PORT[$chain]}/bench" || true)
    [ "$code" = 401 ] || die "$chain answered $code without an API key (auth filter not running?)"
  fi
  head=$(curl -fsS -D - -o /dev/null --max-time 5 -H "x-api-key: $API_KEY" "http://127.0.0.1:${PORT[$chain]}/bench" || true)
  if [[ " ${CHAIN[$chain]} " == *" headers "* ]]; then
    grep -qi '^x-proxied-by: weir' <<<"$head" || die "$chain response lacks x-proxied-by (header_rewrite not running?)"
  fi
  if [[ " ${CHAIN[$chain]} " == *" limit "* ]]; then
    grep -qi '^x-ratelimit-limit:' <<<"$head" || die "$chain response lacks x-ratelimit-limit (rate_limit not running?)"
  fi
done
log "all proxies return the upstream's body: $PROXIES"

# --- measuring ----------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)

# CPU ticks (utime+stime) of a process and its direct children (nginx master + workers).
cpu_ticks() {
  local root=$1 total=0 pid t
  local kids
  kids=$(cat "/proc/$root/task/$root/children" 2>/dev/null || pgrep -P "$root" 2>/dev/null || true)
  for pid in "$root" $kids; do
    # Fields after the ")" of comm: state is field 3; utime=14, stime=15.
    t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}

# wrk latency value ("1.23ms", "850.00us", "1.01s") → milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else { printf "%.3f", v } }'
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"

# run_one NAME ROUND
run_one() {
  local name=$1 round=$2 port=${PORT[$1]} pid=${PID[$1]} out before after requests rps p99 errors cpu_us
  local hdr="x-api-key: $API_KEY"
  # Warm-up: fill connection pools and caches.
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d1s -H "$hdr" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$hdr" "http://127.0.0.1:$port/")
  after=$(cpu_ticks "$pid")
  requests=$(echo "$out" | awk '/requests in/ { print $1; exit }')
  rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2; exit }')
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2; exit }')")
  errors=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }')
  [ -n "$requests" ] && [ "$requests" -gt 0 ] || die "$name: wrk completed no requests:\n$out"
  cpu_us=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$rps" "$p99" "$cpu_us" "$requests" "$errors" >>"$RESULTS"
  log "round $round $name: $rps req/s, p99 ${p99} ms, ${cpu_us} µs CPU/req, $requests requests, $errors errors"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load: wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds; proxies on CPU 0, wrk + upstream on CPU 1"
log "load average before: $LOAD_BEFORE (other processes on these CPUs skew results)"
read -r -a ORDER <<<"$PROXIES"
for round in $(seq 1 "$ROUNDS"); do
  # Rotate who goes first, so no proxy always runs on a warmer (or busier) machine.
  n=${#ORDER[@]}
  for i in $(seq 0 $((n - 1))); do
    run_one "${ORDER[$(((i + round - 1) % n))]}" "$round"
  done
done

# --- report -------------------------------------------------------------------------------------
median() { # median NAME COLUMN
  awk -F'\t' -v n="$1" -v c="$2" '$1 == n { print $c }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "null"; else printf "%.2f", a / b }'; }
md() { [ "$1" = null ] && echo "-" || echo "$1"; }

declare -A RPS P99 CPU ERR
for name in $PROXIES; do
  RPS[$name]=$(median "$name" 3)
  P99[$name]=$(median "$name" 4)
  CPU[$name]=$(median "$name" 5)
  ERR[$name]=$(awk -F'\t' -v n="$name" '$1 == n { e += $7 } END { print e + 0 }' "$RESULTS")
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "| proxy | requests/s | p99 latency (ms) | CPU µs/request | req/s ÷ weir | p99 ÷ weir | CPU/req ÷ weir | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for name in $PROXIES; do
  echo "| $name | ${RPS[$name]} | ${P99[$name]} | ${CPU[$name]} | $(md "$(ratio "${RPS[$name]}" "${RPS[weir]:-}")") | $(md "$(ratio "${P99[$name]}" "${P99[weir]:-}")") | $(md "$(ratio "${CPU[$name]}" "${CPU[weir]:-}")") | ${ERR[$name]} |"
done
echo
echo "median of $ROUNDS interleaved rounds; wrk -t1 -c$CONNECTIONS -d${DURATION}s keep-alive; one proxy worker/thread on CPU 0, wrk + upstream on CPU 1; $(nproc) CPUs; load average before: $LOAD_BEFORE, after: $LOAD_AFTER"

case "$OUT_NAME" in /*) OUT_FILE=$OUT_NAME ;; *) OUT_FILE=$OUT_DIR/$OUT_NAME ;; esac
mkdir -p "$(dirname "$OUT_FILE")"
{
  echo "{"
  echo "  \"tool\": \"wrk\", \"duration_s\": $DURATION, \"connections\": $CONNECTIONS, \"rounds\": $ROUNDS,"
  echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"nproc\": $(nproc), \"cpu\": \"$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)\","
  echo "  \"loadavg_before\": \"$LOAD_BEFORE\", \"loadavg_after\": \"$LOAD_AFTER\","
  echo "  \"nginx_version\": \"$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')\","
  has haproxy && echo "  \"haproxy_version\": \"$("$HAPROXY" -v 2>&1 | awk 'NR == 1 { print $3 }')\","
  echo "  \"ratios_to\": \"weir\","
  echo "  \"summary\": {"
  first=1
  for name in $PROXIES; do
    [ $first = 1 ] || echo ","
    first=0
    printf '    "%s": { "rps": %s, "p99_ms": %s, "cpu_us_per_req": %s, "errors": %s' "$name" "${RPS[$name]}" "${P99[$name]}" "${CPU[$name]}" "${ERR[$name]}"
    printf ', "rps_ratio": %s, "p99_ratio": %s, "cpu_ratio": %s' \
      "$(ratio "${RPS[$name]}" "${RPS[weir]:-}")" "$(ratio "${P99[$name]}" "${P99[weir]:-}")" "$(ratio "${CPU[$name]}" "${CPU[weir]:-}")"
    printf ' }'
  done
  echo
  echo "  },"
  echo "  \"rounds_detail\": ["
  awk -F'\t' 'BEGIN { sep = "" } { printf "%s    { \"proxy\": \"%s\", \"round\": %s, \"rps\": %s, \"p99_ms\": %s, \"cpu_us_per_req\": %s, \"requests\": %s, \"errors\": %s }", sep, $1, $2, $3, $4, $5, $6, $7; sep = ",\n" } END { print "" }' "$RESULTS"
  echo "  ]"
  echo "}"
} >"$OUT_FILE"
log "wrote $OUT_FILE"
