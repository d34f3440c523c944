#!/usr/bin/env bash
# filter-cost.sh — what each built-in filter (and the example Rust filter) costs per request,
# alone in the chain: one `weir bench` per filter (in-process upstream and load; the bench runs
# the same load without and with the filter), printed as the markdown table of
# filters/README.md "Cost". Per filter: CPU µs/request without and with it, the difference, the
# ratio, the time the host measured inside its callbacks, and p99 without/with.
#
# Usage: benches/filter-cost.sh [--duration 5s] [--connections 16] [--rounds 2] [--no-build]
# Needs: cargo, python3; the filters built (scripts/build-filters.sh → target/filters/).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=5s
CONNECTIONS=16
ROUNDS=2
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "filter-cost: unknown argument $1" >&2; exit 1 ;;
  esac
done
if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --profile perf -p weir --quiet)
fi
WEIR=$TARGET/perf/weir
FILTERS=$TARGET/filters
[ -x "$WEIR" ] || { echo "filter-cost: no $WEIR" >&2; exit 1; }
WORK=$(mktemp -d /tmp/weir-filter-cost.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# name | label | module | config (YAML flow mapping)
CASES=(
  "auth|auth (API key + 1 deny rule)|auth.wasm|{ api_keys: { header: x-api-key, keys: { bench-key: bench } }, rules: [ { action: deny, methods: [DELETE], paths: [/admin] } ] }"
  "rate_limit|rate_limit (global, shared-data CAS)|rate_limit.wasm|{ rate: 1000000000, per: second, key: global }"
  "header_rewrite|header_rewrite (5 rules, 2 templates)|header_rewrite.wasm|{ request: { set: { x-env: bench, x-client: '%source.address%' }, remove: [x-debug] }, response: { set: { x-request-id: '%request.id%' }, remove: [server] } }"
  "fault|fault (0 %, sampling only)|fault.wasm|{ delay: { fixed: 200ms, percent: 0 }, abort: { status: 503, percent: 0 }, header_override: false }"
  "example|example Rust filter (1 response header)|example_rust.wasm|{ greeting: hello }"
)

for c in "${CASES[@]}"; do
  IFS='|' read -r name label module cfg <<<"$c"
  cat >"$WORK/$name.yaml" <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:0
    filters: [$name]
    routes:
      - match: { path_prefix: / }
        cluster: upstream
clusters:
  - name: upstream
    endpoints: [127.0.0.1:1]
filters:
  - name: $name
    module: $FILTERS/$module
    config: $cfg
EOF
  for r in $(seq 1 "$ROUNDS"); do
    echo "filter-cost: $name round $r" >&2
    "$WEIR" bench --config "$WORK/$name.yaml" --duration "$DURATION" --connections "$CONNECTIONS" \
      --json 2>/dev/null >"$WORK/$name.$r.json"
  done
  echo "$label" >"$WORK/$name.label"
done

python3 - "$WORK" "$ROUNDS" "${CASES[@]}" <<'EOF'
import json, sys
work, rounds, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def cells(runs, get, fmt):
    return " / ".join(fmt % get(d) for d in runs)

columns = [
    (lambda d: d["without_filters"]["cpu_us_per_request"], "%.1f"),
    (lambda d: d["with_filters"]["cpu_us_per_request"], "%.1f"),
    (lambda d: d["chain_cpu_us_per_request"], "%.1f"),
    (lambda d: d["chain_cpu_ratio"], "%.2f"),
    (lambda d: sum(us for _, us in d["with_filters"]["filter_us_per_request"]), "%.1f"),
    (lambda d: d["without_filters"]["p99_ms"], "%.2f"),
    (lambda d: d["with_filters"]["p99_ms"], "%.2f"),
]
print("| filter | CPU µs/req without | CPU µs/req with | chain CPU µs/req (with − without) | ratio "
      "| in-filter µs/req (host-timed callbacks) | p99 ms without | p99 ms with |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for c in cases:
    name = c.split("|")[0]
    label = open(f"{work}/{name}.label").read().strip()
    runs = [json.load(open(f"{work}/{name}.{r}.json")) for r in range(1, rounds + 1)]
    print("| " + label + " | " + " | ".join(cells(runs, g, f) for g, f in columns) + " |")
EOF
