#!/usr/bin/env bash
# Governed MCP calls vs direct (docs/performance.md, "Governed MCP calls vs direct").
#
# Drives MCP tools/call through Mandate to a fast Streamable HTTP MCP upstream
# (bench/mcp_upstream_fast) and the same calls directly to that upstream, interleaved in one
# run, and prints per scenario the direct and governed p50/p99, the latency Mandate adds and
# the throughput ratio governed/direct, then a verdict against the targets of issue 2:
#   p99 added < 1 ms at 1,000 calls/s;  throughput >= 0.33x direct at saturation.
# Mandate does its full work on every call, audit included: call.decided is made durable
# (group-committed fdatasync of the audit log on the data dir's disk) before the upstream call,
# and call.completed is queued for the next group commit after it. That is part of what is
# measured.
#
# Called by `make bench`. Loopback only; every load test is bounded in time and count.
# Environment (all optional):
#   BENCH_RUNS=1          repetitions of the whole scenario set; the table shows medians
#   BENCH_DURATION=10     measured seconds per load test (plus BENCH_WARMUP=1 s unrecorded)
#   BENCH_CONNECTIONS=32  connections (one MCP session each) for every scenario
#   BENCH_ACCEPT=both     the agents' Accept header: "both" (application/json and
#                         text/event-stream, as MCP clients must send; Mandate then answers
#                         tools/call as SSE) or "json" (Mandate answers plain JSON)
#   BENCH_SKIP_BUILD=1    use the binaries already in build/release
#   BENCH_KEEP=1          keep the temp dir (config, data dir, logs, per-test JSON)
#   BENCH_SCENARIOS="rate-1000 rate-3000 saturation"   the scenarios to run; "audit" (not in
#                         the default) runs bench/mandate_audit_bench once per run before the
#                         MCP scenarios: durable audit appends vs SQLite (WAL, synchronous=FULL)
#                         with 1, 8 and 64 writers, and verification (about 45 s; its data in
#                         the temp dir below). BENCH_SCENARIOS=audit runs only that.
#   BENCH_PERF=DIR        profile Mandate during each governed test:
#                         perf record -e cpu-clock --call-graph dwarf into DIR/<scenario>.perf.data
# With the defaults the whole script takes about 80 s after the build (6 tests x 11 s);
# BENCH_RUNS=3 takes about 3.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build/release
RUNS=${BENCH_RUNS:-1}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-1}
CONNS=${BENCH_CONNECTIONS:-32}
ACCEPT=${BENCH_ACCEPT:-both}
MCP_SCENARIOS=""
RUN_AUDIT=0
for scenario in ${BENCH_SCENARIOS:-rate-1000 rate-3000 saturation}; do
  if [ "$scenario" = audit ]; then RUN_AUDIT=1; else MCP_SCENARIOS="$MCP_SCENARIOS $scenario"; fi
done
TARGETS=()
if [ -n "$MCP_SCENARIOS" ]; then TARGETS+=(mandate mcp_upstream_fast mcp_load); fi
if [ "$RUN_AUDIT" = 1 ]; then TARGETS+=(mandate_audit_bench); fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "== building (release): ${TARGETS[*]}"
  cmake --preset release >/dev/null
  cmake --build --preset release --target "${TARGETS[@]}"
fi
MANDATE=$ROOT/$BUILD/mandate
UPSTREAM=$ROOT/$BUILD/bench/mcp_upstream_fast
LOAD=$ROOT/$BUILD/bench/mcp_load

# A temp dir on the same disk as a normal data dir (the build dir), so the audit fdatasync
# costs what it costs in production on this machine.
WORK=$(mktemp -d "$ROOT/$BUILD/bench-run.XXXXXX")
UP_PID=""
MANDATE_PID=""
cleanup() {
  # Only the processes this script started, by their pid.
  [ -n "$MANDATE_PID" ] && kill "$MANDATE_PID" 2>/dev/null && wait "$MANDATE_PID" 2>/dev/null
  [ -n "$UP_PID" ] && kill "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Waits up to 10 s for a line matching $2 in file $1 and prints its port.
wait_port() {
  local file=$1 pattern=$2 port=""
  for _ in $(seq 1 200); do
    port=$(sed -n "s#.*${pattern}http://127.0.0.1:\([0-9][0-9]*\).*#\1#p" "$file" | head -n1)
    [ -n "$port" ] && { echo "$port"; return 0; }
    sleep 0.05
  done
  echo "run-bench: timed out waiting for '$pattern' in $file:" >&2
  cat "$file" >&2
  return 1
}

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
read -r LOAD1 _ < /proc/loadavg
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 1.0) }'; then
  echo "!! the machine is busy (1-minute load $LOAD1): numbers will be noisier than on an idle machine"
fi

FAILED=0
if [ "$RUN_AUDIT" = 1 ]; then
  for run in $(seq 1 "$RUNS"); do
    echo "== audit run $run: durable audit appends, Mandate vs SQLite (bench/mandate_audit_bench)"
    "$ROOT/$BUILD/bench/mandate_audit_bench" --dir "$WORK" || FAILED=1
  done
  if [ -z "$MCP_SCENARIOS" ]; then
    if [ "$FAILED" != 0 ]; then
      echo "!!!!! run-bench: the audit benchmark had errors; see above" >&2
      exit 1
    fi
    exit 0
  fi
fi

"$UPSTREAM" > "$WORK/upstream.log" 2>&1 &
UP_PID=$!
UP_PORT=$(wait_port "$WORK/upstream.log" "ready on ")
echo "== fast upstream ready on 127.0.0.1:$UP_PORT"

mkdir -p "$WORK/policies" "$WORK/results"
cat > "$WORK/policies/bench.cedar" <<'EOF'
permit (principal, action == Action::"fast:echo", resource);
EOF
cat > "$WORK/mandate.yaml" <<EOF
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
data_dir: ./data
policies: ./policies
upstreams:
  fast: { kind: mcp, url: "http://127.0.0.1:$UP_PORT/mcp", max_inflight: $CONNS, tools: { echo: { class: read } } }
EOF
CFG=$WORK/mandate.yaml

"$MANDATE" serve -c "$CFG" > "$WORK/mandate.out" 2> "$WORK/mandate.log" &
MANDATE_PID=$!
AGENT_PORT=$(wait_port "$WORK/mandate.log" "mandate: agent listener ready on ")
wait_port "$WORK/mandate.log" "mandate: admin listener ready on " > /dev/null
echo "== mandate ready: agent listener 127.0.0.1:$AGENT_PORT (audit log in $WORK/data/audit)"

"$MANDATE" -c "$CFG" human add bench > /dev/null
"$MANDATE" -c "$CFG" agent add bench-agent --owner bench > /dev/null
TOKEN=$("$MANDATE" -c "$CFG" session start --agent bench-agent --for bench --task BENCH --ttl 1h)

# The floor under the audit log: one write + fdatasync of a record-sized line on its disk.
PROBE=$("$LOAD" fsync-probe --dir "$WORK/data" --count 500)
FSYNC_P50=$(echo "$PROBE" | sed -n 's/.*"p50":\([0-9.]*\).*/\1/p')
FSYNC_P99=$(echo "$PROBE" | sed -n 's/.*"p99":\([0-9.]*\).*/\1/p')
echo "== disk under the audit log: write+fdatasync p50 ${FSYNC_P50} us, p99 ${FSYNC_P99} us (a governed call waits for one)"

# CPU seconds (user + system) a process has used so far, in microseconds.
cpu_micros() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000000 / hz }' "/proc/$1/stat"; }

DIRECT_URL=http://127.0.0.1:$UP_PORT/mcp
GOVERNED_URL=http://127.0.0.1:$AGENT_PORT/mcp/fast

# run_one LABEL TARGET RUN MODE-ARGS...
run_one() {
  local label=$1 target=$2 run=$3
  shift 3
  local url=$DIRECT_URL
  local token_args=()
  if [ "$target" = governed ]; then
    url=$GOVERNED_URL
    token_args=(--token "$TOKEN")
  fi
  printf '   %-11s %-8s run %s ... ' "$label" "$target" "$run"
  local m0 u0 m1 u1 rc=0
  m0=$(cpu_micros "$MANDATE_PID")
  u0=$(cpu_micros "$UP_PID")
  local perf_pid=""
  if [ -n "${BENCH_PERF:-}" ] && [ "$target" = governed ]; then
    mkdir -p "$BENCH_PERF"
    perf record -q -e cpu-clock --call-graph dwarf,16384 -F 999 -p "$MANDATE_PID" \
      -o "$BENCH_PERF/$label.perf.data" -- sleep "$((WARMUP + DURATION))" > /dev/null 2>&1 &
    perf_pid=$!
  fi
  "$LOAD" run --url "$url" "${token_args[@]}" --label "$label" --target "$target" --run "$run" \
    --duration "$DURATION" --warmup "$WARMUP" --connections "$CONNS" --timeout-ms 5000 \
    --accept "$ACCEPT" --out "$WORK/results/$label.$target.$run.json" "$@" \
    > /dev/null 2> "$WORK/results/$label.$target.$run.err" || rc=$?
  [ -n "$perf_pid" ] && wait "$perf_pid"
  m1=$(cpu_micros "$MANDATE_PID")
  u1=$(cpu_micros "$UP_PID")
  if [ "$rc" = 0 ]; then
    # CPU per call is over every call sent, the unrecorded warmup included.
    local calls
    calls=$(sed -n 's/.*"calls_sent":\([0-9]*\).*/\1/p' "$WORK/results/$label.$target.$run.json")
    sed -n 's/.*"count":\([0-9]*\).*"unfinished":\([0-9]*\).*"achieved_rate":\([0-9.]*\).*"p50":\([0-9.]*\).*"p99":\([0-9.]*\).*/\1 calls (\2 unanswered), \3 calls\/s, p50 \4 us, p99 \5 us/p' \
      "$WORK/results/$label.$target.$run.json" | tr -d '\n'
    awk -v m=$((m1 - m0)) -v u=$((u1 - u0)) -v n="$calls" 'BEGIN {
      if (n > 0) printf ", CPU/call: mandate %.0f us, upstream %.0f us\n", m / n, u / n; else print "" }'
    grep -hE "OVERLOADED|DID NOT SUSTAIN" "$WORK/results/$label.$target.$run.err" | sed 's/^/   /' || true
  else
    FAILED=1
    echo "FAILED"
    cat "$WORK/results/$label.$target.$run.err" >&2
  fi
}

echo "== $RUNS run(s); each test: ${WARMUP}s warmup + ${DURATION}s measured, $CONNS connections (one MCP session each), Accept: $ACCEPT"
for run in $(seq 1 "$RUNS"); do
  # Alternate which side goes first, so a drift of the machine's state does not favour one.
  if [ $((run % 2)) = 1 ]; then ORDER="direct governed"; else ORDER="governed direct"; fi
  for scenario in $MCP_SCENARIOS; do
    for target in $ORDER; do
      case $scenario in
        rate-1000)  run_one "$scenario" "$target" "$run" --mode open --rate 1000 ;;
        rate-3000)  run_one "$scenario" "$target" "$run" --mode open --rate 3000 ;;
        saturation) run_one "$scenario" "$target" "$run" --mode closed --max-calls 5000000 ;;
      esac
    done
  done
done

echo
echo "== Governed MCP calls vs direct ($(nproc) CPUs, load average at end $(cut -d' ' -f1-3 /proc/loadavg))"
echo "   audit: every governed call appends 2 records (call.decided durable before the upstream call, by an"
echo "   fdatasync group commit; call.completed in the next group commit);"
echo "   disk write+fdatasync p50 ${FSYNC_P50} us, p99 ${FSYNC_P99} us; agents' Accept: $ACCEPT"
set +e
"$LOAD" report --p99-added-max rate-1000:1000 --ratio-min saturation:0.33 "$WORK"/results/*.json
REPORT_RC=$?
set -e
AUDIT_LINES=$(cat "$WORK"/data/audit/*.jsonl 2>/dev/null | wc -l)
echo "   audit records written during the run: $AUDIT_LINES"
if [ "$FAILED" != 0 ] || [ "$REPORT_RC" != 0 ]; then
  echo "!!!!! run-bench: some load tests had errors; see above" >&2
  exit 1
fi
