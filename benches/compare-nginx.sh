#!/usr/bin/env bash
# compare-nginx.sh — nginx and weir side by side as HTTP/1.1 reverse proxies to the same upstream.
#
# Both proxies run one worker, pinned to CPU 0; the upstream (a separate nginx returning a small
# static 200) and the load generator (wrk, keep-alive) share CPU 1. Rounds are interleaved
# (nginx, weir, nginx, weir, ...). Reported per proxy, as the median of the rounds:
#   - requests/s and p99 latency (wrk --latency),
#   - proxy CPU µs per request: utime+stime delta of the proxy process(es) from /proc/<pid>/stat
#     divided by the number of requests wrk completed,
# and the ratios weir / nginx. Writes JSON to $CARGO_TARGET_DIR/bench/compare-nginx.json
# (default target/bench/compare-nginx.json).
#
# For a like-for-like comparison nginx does the same proxy hygiene weir does by default
# (x-forwarded-for, x-forwarded-proto, x-request-id) and both proxies have access logs off.
#
# Usage: benches/compare-nginx.sh [--duration 10] [--connections 32] [--rounds 3]
#                                 [--only nginx|weir] [--no-build] [--weir-bin PATH]
# Env:   UPSTREAM_PORT (38180) NGINX_PORT (38181) WEIR_PORT (38182) CARGO_TARGET_DIR
# Needs: Debian/Ubuntu (installs nginx and wrk with apt-get when missing), 2+ CPUs, cargo.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR=$TARGET/bench
DURATION=10
CONNECTIONS=32
ROUNDS=3
ONLY=""
BUILD=1
WEIR_BIN=""
UPSTREAM_PORT=${UPSTREAM_PORT:-38180}
NGINX_PORT=${NGINX_PORT:-38181}
WEIR_PORT=${WEIR_PORT:-38182}

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=${2%s}; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --weir-bin) WEIR_BIN=$2; BUILD=0; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "compare-nginx: unknown argument $1" >&2; usage 1 ;;
  esac
done
case "$ONLY" in ""|nginx|weir) ;; *) echo "compare-nginx: --only nginx|weir" >&2; exit 1 ;; esac
PROXIES="nginx weir"
[ -n "$ONLY" ] && PROXIES=$ONLY

log() { echo "compare-nginx: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools --------------------------------------------------------------------------------------
need_install=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_install+=(nginx)
command -v wrk >/dev/null 2>&1 || need_install+=(wrk)
command -v taskset >/dev/null 2>&1 || need_install+=(util-linux)
if [ ${#need_install[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  log "installing ${need_install[*]} (apt-get)"
  # policy-rc.d in containers stops the nginx package from starting a system daemon; elsewhere
  # the packaged service is left as the distribution configures it.
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
    --no-install-recommends "${need_install[@]}" >/dev/null
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (proxy on CPU 0, load + upstream on CPU 1)"

# --- weir binary --------------------------------------------------------------------------------
if [[ " $PROXIES " == *" weir "* ]]; then
  if [ -z "$WEIR_BIN" ]; then
    WEIR_BIN=$TARGET/release/weir
    if [ "$BUILD" = 1 ]; then
      log "building weir (cargo build --release -p weir)"
      (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release -p weir --quiet)
    fi
  fi
  [ -x "$WEIR_BIN" ] || die "no weir binary at $WEIR_BIN"
fi

# --- scratch dir, cleanup -----------------------------------------------------------------------
WORK=$(mktemp -d /tmp/weir-compare-nginx.XXXXXX)
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
for p in "$UPSTREAM_PORT" "$NGINX_PORT" "$WEIR_PORT"; do
  port_free "$p" || die "port $p is in use (set UPSTREAM_PORT / NGINX_PORT / WEIR_PORT)"
done

# Waits until 127.0.0.1:$1 answers HTTP 200 (at most ~10 s).
wait_http() {
  local i
  for i in $(seq 1 100); do
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; then return 0; fi
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

# --- proxies (CPU 0) ----------------------------------------------------------------------------
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
} >"$WORK/proxy.conf"

cat >"$WORK/weir.yaml" <<EOF
access_log: { path: "off" }
listeners:
  - name: bench
    address: 127.0.0.1:$WEIR_PORT
    routes:
      - match: { path_prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:$UPSTREAM_PORT]
EOF

NGINX_PID=""
WEIR_PID=""
if [[ " $PROXIES " == *" nginx "* ]]; then
  taskset -c 0 "$NGINX" -p "$WORK/" -c "$WORK/proxy.conf" -e "$WORK/proxy-error.log" &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_http "$NGINX_PORT" || die "nginx proxy did not start: $(cat "$WORK"/proxy-error.log 2>/dev/null)"
fi
if [[ " $PROXIES " == *" weir "* ]]; then
  : >"$WORK/weir.out"
  taskset -c 0 "$WEIR_BIN" run --config "$WORK/weir.yaml" --workers 1 >"$WORK/weir.out" 2>"$WORK/weir.err" &
  WEIR_PID=$!
  PIDS+=("$WEIR_PID")
  ready=0
  for _ in $(seq 1 300); do
    if grep -q '"event":"ready"' "$WORK/weir.out" 2>/dev/null; then ready=1; break; fi
    kill -0 "$WEIR_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ "$ready" = 1 ] || die "weir did not print {\"event\":\"ready\"}: $(tail -n 20 "$WORK/weir.err" 2>/dev/null)"
  wait_http "$WEIR_PORT" || die "weir does not answer 200 on port $WEIR_PORT"
fi

# Each proxy must really forward to the upstream (not answer by itself).
for pair in "nginx:$NGINX_PORT" "weir:$WEIR_PORT"; do
  name=${pair%%:*}
  [[ " $PROXIES " == *" $name "* ]] || continue
  body=$(curl -fsS --max-time 5 "http://127.0.0.1:${pair#*:}/bench" || true)
  [ "$body" = "hello from the upstream" ] || die "$name did not return the upstream's body (got: ${body:0:200})"
done

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

# run_one NAME PORT PID ROUND
run_one() {
  local name=$1 port=$2 pid=$3 round=$4 out before after requests rps p99 errors cpu_us
  # Warm-up: fill connection pools and caches.
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/")
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

log "load: wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds; proxies on CPU 0, wrk + upstream on CPU 1"
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on these CPUs skew results)"
for round in $(seq 1 "$ROUNDS"); do
  order=$PROXIES
  # Alternate who goes first, so neither always runs on a warmer machine.
  if [ $((round % 2)) -eq 0 ] && [ -z "$ONLY" ]; then order="weir nginx"; fi
  for name in $order; do
    case $name in
      nginx) run_one nginx "$NGINX_PORT" "$NGINX_PID" "$round" ;;
      weir) run_one weir "$WEIR_PORT" "$WEIR_PID" "$round" ;;
    esac
  done
done

# --- report -------------------------------------------------------------------------------------
median() { # median NAME COLUMN
  awk -F'\t' -v n="$1" -v c="$2" '$1 == n { print $c }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

declare -A RPS P99 CPU
for name in $PROXIES; do
  RPS[$name]=$(median "$name" 3)
  P99[$name]=$(median "$name" 4)
  CPU[$name]=$(median "$name" 5)
done

echo
echo "| proxy | requests/s | p99 latency (ms) | CPU µs/request | req/s vs nginx | p99 vs nginx | CPU/req vs nginx |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for name in $PROXIES; do
  echo "| $name | ${RPS[$name]} | ${P99[$name]} | ${CPU[$name]} | $(ratio "${RPS[$name]}" "${RPS[nginx]:-}") | $(ratio "${P99[$name]}" "${P99[nginx]:-}") | $(ratio "${CPU[$name]}" "${CPU[nginx]:-}") |"
done
echo
echo "median of $ROUNDS rounds; wrk -t1 -c$CONNECTIONS -d${DURATION}s keep-alive; one proxy worker on CPU 0; $(nproc) CPUs; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$OUT_DIR"
{
  echo "{"
  echo "  \"tool\": \"wrk\", \"duration_s\": $DURATION, \"connections\": $CONNECTIONS, \"rounds\": $ROUNDS,"
  echo "  \"nginx_version\": \"$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')\","
  echo "  \"summary\": {"
  first=1
  for name in $PROXIES; do
    [ $first = 1 ] || echo ","
    first=0
    printf '    "%s": { "rps": %s, "p99_ms": %s, "cpu_us_per_req": %s' "$name" "${RPS[$name]}" "${P99[$name]}" "${CPU[$name]}"
    if [ "$name" != nginx ] && [ -n "${RPS[nginx]:-}" ]; then
      printf ', "rps_ratio": %s, "p99_ratio": %s, "cpu_ratio": %s' \
        "$(ratio "${RPS[$name]}" "${RPS[nginx]}")" "$(ratio "${P99[$name]}" "${P99[nginx]}")" "$(ratio "${CPU[$name]}" "${CPU[nginx]}")"
    fi
    printf ' }'
  done
  echo
  echo "  },"
  echo "  \"rounds_detail\": ["
  awk -F'\t' 'BEGIN { sep = "" } { printf "%s    { \"proxy\": \"%s\", \"round\": %s, \"rps\": %s, \"p99_ms\": %s, \"cpu_us_per_req\": %s, \"requests\": %s, \"errors\": %s }", sep, $1, $2, $3, $4, $5, $6, $7; sep = ",\n" } END { print "" }' "$RESULTS"
  echo "  ]"
  echo "}"
} >"$OUT_DIR/compare-nginx.json"
log "wrote $OUT_DIR/compare-nginx.json"
