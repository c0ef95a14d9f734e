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
#   BENCH_MANDATE=PATH    the mandate binary to measure (default build/release/mandate): to
#                         compare two builds in the same conditions, keep a copy of the old one
#                         and alternate runs (docs/performance.md)
#   BENCH_KEEP=1          keep the temp dir (config, data dir, logs, per-test JSON)
#   BENCH_SCENARIOS="rate-1000 rate-3000 saturation"   the scenarios to run; "audit" (not in
#                         the default) runs bench/mandate_audit_bench once per run before the
#                         MCP scenarios: durable audit appends vs SQLite (WAL, synchronous=FULL)
#                         with 1, 8 and 64 writers, and verification (about 45 s; its data in
#                         the temp dir below). BENCH_SCENARIOS=audit runs only that.
#                         "budget" (not in the default either; docs/performance.md, "Budgets: 64
#                         callers on one hot budget"): Mandate alone at saturation with
#                         BENCH_BUDGET_CONNECTIONS=64 callers, started afresh for every test (a new
#                         data dir each, so both sides start from an empty audit log) once with
#                         the bench config and once with the same config plus one budget that
#                         every call matches and none exhausts, `hot` below; the two alternate
#                         over BENCH_RUNS rounds, and the script prints calls/s of each, the ratio
#                         budget/no-budget, the loss and the verdict against the issue's target
#                         (loss <= 5%), and checks in each test's audit log that every call.decided
#                         of the budget side carries its reservation on `hot` and every
#                         call.completed its settlement (and none on the other side).
#                         BENCH_SCENARIOS=budget runs only that (BENCH_RUNS=3: about 1.5 min).
#                         "revocation" (not in the default either; docs/performance.md,
#                         "Revocation check at scale") runs bench/mandate_revocation_bench once
#                         per run, before the others: RevocationSet::Check over a SqliteStore
#                         holding 1,000, 100,000 and 1,000,000 revocations vs an indexed SQLite
#                         lookup per subject, at delegation depth 1 and 4, 1 and 2 threads (about
#                         30 s; its store files in the temp dir below). BENCH_SCENARIOS=revocation
#                         runs only that.
#                         "policy" (not in the default either; docs/performance.md, "Cedar
#                         authorization against cedar-wasm") runs bench/mandate_policy_bench once
#                         per run, before the others: policy::IsAuthorized vs the Cedar reference
#                         (@cedar-policy/cedar-wasm, preparsed policy set) on the same policies,
#                         entities and requests at 10, 100, 1,000 and 10,000 policies (about 40 s).
#                         BENCH_SCENARIOS=policy runs only that.
#   BENCH_PERF=DIR        profile Mandate during each governed test:
#                         perf record -e cpu-clock --call-graph dwarf into DIR/<scenario>.perf.data
#                         (budget scenario: DIR/no-budget.perf.data and DIR/hot-budget.perf.data)
#   BENCH_FLOOR=1         also drive the saturation scenario through bench/null_proxy.cc (target
#                         "floor": Mandate's HTTP server and client forwarding with no governance),
#                         so the report separates the I/O model's cost from the governance's;
#                         0 leaves it out
# With the defaults the whole script takes about 90 s after the build (7 tests x 11 s);
# BENCH_RUNS=3 takes about 4 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build/release
RUNS=${BENCH_RUNS:-1}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-1}
CONNS=${BENCH_CONNECTIONS:-32}
ACCEPT=${BENCH_ACCEPT:-both}
BUDGET_CONNS=${BENCH_BUDGET_CONNECTIONS:-64}
# The issue's target for the budget scenario: throughput lost to one hot budget, percent.
BUDGET_LOSS_MAX_PERCENT=5
MCP_SCENARIOS=""
RUN_AUDIT=0
RUN_BUDGET=0
RUN_REVOCATION=0
RUN_POLICY=0
for scenario in ${BENCH_SCENARIOS:-rate-1000 rate-3000 saturation}; do
  case $scenario in
    audit) RUN_AUDIT=1 ;;
    budget) RUN_BUDGET=1 ;;
    revocation) RUN_REVOCATION=1 ;;
    policy) RUN_POLICY=1 ;;
    *) MCP_SCENARIOS="$MCP_SCENARIOS $scenario" ;;
  esac
done
TARGETS=()
if [ -n "$MCP_SCENARIOS" ] || [ "$RUN_BUDGET" = 1 ]; then
  TARGETS+=(mandate mcp_upstream_fast mcp_load mandate_null_proxy)
fi
if [ "$RUN_AUDIT" = 1 ]; then TARGETS+=(mandate_audit_bench); fi
if [ "$RUN_REVOCATION" = 1 ]; then TARGETS+=(mandate_revocation_bench); fi
if [ "$RUN_POLICY" = 1 ]; then TARGETS+=(mandate_policy_bench); fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "== building (release): ${TARGETS[*]}"
  cmake --preset release >/dev/null
  cmake --build --preset release --target "${TARGETS[@]}"
fi
UPSTREAM=$ROOT/$BUILD/bench/mcp_upstream_fast
LOAD=$ROOT/$BUILD/bench/mcp_load
NULL_PROXY=$ROOT/$BUILD/bench/mandate_null_proxy

# A temp dir on the same disk as a normal data dir (the build dir), so the audit fdatasync
# costs what it costs in production on this machine.
WORK=$(mktemp -d "$ROOT/$BUILD/bench-run.XXXXXX")
UP_PID=""
MANDATE_PID=""
FLOOR_PID=""
cleanup() {
  # Only the processes this script started, by their pid.
  [ -n "$FLOOR_PID" ] && kill "$FLOOR_PID" 2>/dev/null && wait "$FLOOR_PID" 2>/dev/null
  [ -n "$MANDATE_PID" ] && kill "$MANDATE_PID" 2>/dev/null && wait "$MANDATE_PID" 2>/dev/null
  [ -n "$UP_PID" ] && kill "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# A copy of the binary: the budget scenario starts Mandate afresh for every test, and a rebuild
# of build/release during the run (another job on a shared tree) must not change what is measured.
MANDATE=$WORK/mandate.bin
if [ -n "$MCP_SCENARIOS" ] || [ "$RUN_BUDGET" = 1 ]; then cp "${BENCH_MANDATE:-$ROOT/$BUILD/mandate}" "$MANDATE"; fi

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

[ -z "${BENCH_MANDATE:-}" ] || echo "== mandate binary: $BENCH_MANDATE"
echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
read -r LOAD1 _ < /proc/loadavg
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 1.0) }'; then
  echo "!! the machine is busy (1-minute load $LOAD1): numbers will be noisier than on an idle machine"
fi

FAILED=0
if [ "$RUN_POLICY" = 1 ]; then
  for run in $(seq 1 "$RUNS"); do
    echo "== policy run $run: Cedar authorization, Mandate vs cedar-wasm (bench/mandate_policy_bench)"
    "$ROOT/$BUILD/bench/mandate_policy_bench" --dir "$WORK" || FAILED=1
  done
  if [ -z "$MCP_SCENARIOS" ] && [ "$RUN_BUDGET" = 0 ] && [ "$RUN_AUDIT" = 0 ] &&
     [ "$RUN_REVOCATION" = 0 ]; then
    if [ "$FAILED" != 0 ]; then
      echo "!!!!! run-bench: the policy benchmark had errors; see above" >&2
      exit 1
    fi
    exit 0
  fi
fi
if [ "$RUN_REVOCATION" = 1 ]; then
  for run in $(seq 1 "$RUNS"); do
    echo "== revocation run $run: the per-call revocation check at scale, RevocationSet vs SQLite (bench/mandate_revocation_bench)"
    "$ROOT/$BUILD/bench/mandate_revocation_bench" --dir "$WORK" || FAILED=1
  done
  if [ -z "$MCP_SCENARIOS" ] && [ "$RUN_BUDGET" = 0 ] && [ "$RUN_AUDIT" = 0 ]; then
    if [ "$FAILED" != 0 ]; then
      echo "!!!!! run-bench: the revocation benchmark had errors; see above" >&2
      exit 1
    fi
    exit 0
  fi
fi
if [ "$RUN_AUDIT" = 1 ]; then
  for run in $(seq 1 "$RUNS"); do
    echo "== audit run $run: durable audit appends, Mandate vs SQLite (bench/mandate_audit_bench)"
    "$ROOT/$BUILD/bench/mandate_audit_bench" --dir "$WORK" || FAILED=1
  done
  if [ -z "$MCP_SCENARIOS" ] && [ "$RUN_BUDGET" = 0 ]; then
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
# write_config FILE DATA-DIR MAX-INFLIGHT [EXTRA-YAML]: the bench config (relative paths resolve
# against $WORK, the config's directory).
write_config() {
  cat > "$1" <<EOF
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
data_dir: $2
policies: ./policies
upstreams:
  fast: { kind: mcp, url: "http://127.0.0.1:$UP_PORT/mcp", max_inflight: $3, tools: { echo: { class: read } } }
${4:-}
EOF
}

# start_mandate CONFIG LOG-PREFIX: starts `mandate serve`, registers the bench human and agent,
# starts a session; sets MANDATE_PID, AGENT_PORT, GOVERNED_URL and TOKEN.
start_mandate() {
  local cfg=$1 log=$2
  "$MANDATE" serve -c "$cfg" > "$log.out" 2> "$log.log" &
  MANDATE_PID=$!
  AGENT_PORT=$(wait_port "$log.log" "mandate: agent listener ready on ")
  wait_port "$log.log" "mandate: admin listener ready on " > /dev/null
  "$MANDATE" -c "$cfg" human add bench > /dev/null
  "$MANDATE" -c "$cfg" agent add bench-agent --owner bench > /dev/null
  TOKEN=$("$MANDATE" -c "$cfg" session start --agent bench-agent --for bench --task BENCH --ttl 1h)
  GOVERNED_URL=http://127.0.0.1:$AGENT_PORT/mcp/fast
}

# stop_mandate: SIGTERM (Mandate flushes its audit log and writes a checkpoint), waiting at
# most 20 s before SIGKILL. A child that exited stays a zombie until waited for, so the state
# in /proc, not kill -0, says when it is gone.
stop_mandate() {
  [ -n "$MANDATE_PID" ] || return 0
  kill "$MANDATE_PID" 2>/dev/null || true
  local state
  for _ in $(seq 1 400); do
    state=$(awk '{ print $3 }' "/proc/$MANDATE_PID/stat" 2>/dev/null || true)
    { [ -z "$state" ] || [ "$state" = Z ]; } && break
    sleep 0.05
  done
  if [ -n "$state" ] && [ "$state" != Z ]; then
    echo "run-bench: mandate (pid $MANDATE_PID) did not stop within 20 s; killing it" >&2
    kill -KILL "$MANDATE_PID" 2>/dev/null || true
    FAILED=1
  fi
  wait "$MANDATE_PID" 2>/dev/null || true
  MANDATE_PID=""
}

# The floor under the audit log: one write + fdatasync of a record-sized line on its disk.
probe_disk() {
  local probe
  probe=$("$LOAD" fsync-probe --dir "$1" --count 500)
  FSYNC_P50=$(echo "$probe" | sed -n 's/.*"p50":\([0-9.]*\).*/\1/p')
  FSYNC_P99=$(echo "$probe" | sed -n 's/.*"p99":\([0-9.]*\).*/\1/p')
  # The max too: a shared virtio disk stalls now and then for 10s to 100s of ms, and every
  # governed call in flight then waits for it (docs/performance.md).
  FSYNC_MAX=$(echo "$probe" | sed -n 's/.*"max":\([0-9.]*\).*/\1/p')
  echo "== disk under the audit log: write+fdatasync p50 ${FSYNC_P50} us, p99 ${FSYNC_P99} us, max ${FSYNC_MAX} us of 500 (a governed call waits for one)"
}

# What a thread's sleep and wake-up costs here: a governed call is woken several times (the
# agent's request, the audit group commit, the upstream's answer), and on a VM whose wake-ups
# are slow that, not Mandate's own code, is most of the kernel's share (docs/performance.md).
probe_switch() {
  local probe
  probe=$("$LOAD" switch-probe --count 2000)
  SWITCH_ONE_CPU=$(echo "$probe" | sed -n 's/.*"one_cpu_round_trip_us":{"p50":\([0-9.]*\).*/\1/p')
  SWITCH_TWO_CPU=$(echo "$probe" | sed -n 's/.*"two_cpu_round_trip_us":{"p50":\([0-9.]*\).*/\1/p')
  SYSCALL_NS=$(echo "$probe" | sed -n 's/.*"syscall_ns":\([0-9.]*\).*/\1/p')
  echo "== scheduler: a round trip between two threads (each sleeps until the other wakes it) p50 ${SWITCH_ONE_CPU} us on one CPU, ${SWITCH_TWO_CPU:-n/a} us across two; a syscall ${SYSCALL_NS} ns"
}

# CPU seconds (user + system) a process has used so far, in microseconds.
cpu_micros() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000000 / hz }' "/proc/$1/stat"; }

DIRECT_URL=http://127.0.0.1:$UP_PORT/mcp
GOVERNED_URL=""
RESULTS=$WORK/results  # where run_one writes
RUN_CONNS=$CONNS       # run_one's connection count

# run_one LABEL TARGET RUN MODE-ARGS...
run_one() {
  local label=$1 target=$2 run=$3
  shift 3
  local url=$DIRECT_URL
  local token_args=()
  # The process between the load generator and the upstream, whose CPU per call is reported.
  local mid_pid=$MANDATE_PID mid_name=mandate
  if [ "$target" = governed ]; then
    url=$GOVERNED_URL
    token_args=(--token "$TOKEN")
  elif [ "$target" = floor ]; then
    url=$FLOOR_URL
    mid_pid=$FLOOR_PID
    mid_name="null proxy"
  fi
  printf '   %-11s %-8s run %s ... ' "$label" "$target" "$run"
  local m0 u0 m1 u1 rc=0
  m0=$(cpu_micros "$mid_pid")
  u0=$(cpu_micros "$UP_PID")
  local perf_pid=""
  if [ -n "${BENCH_PERF:-}" ] && [ "$target" = governed ]; then
    mkdir -p "$BENCH_PERF"
    perf record -q -e cpu-clock --call-graph dwarf,16384 -F 999 -p "$MANDATE_PID" \
      -o "$BENCH_PERF/$label.perf.data" -- sleep "$((WARMUP + DURATION))" > /dev/null 2>&1 &
    perf_pid=$!
  fi
  "$LOAD" run --url "$url" "${token_args[@]}" --label "$label" --target "$target" --run "$run" \
    --duration "$DURATION" --warmup "$WARMUP" --connections "$RUN_CONNS" --timeout-ms 5000 \
    --accept "$ACCEPT" --out "$RESULTS/$label.$target.$run.json" "$@" \
    > /dev/null 2> "$RESULTS/$label.$target.$run.err" || rc=$?
  [ -n "$perf_pid" ] && wait "$perf_pid"
  m1=$(cpu_micros "$mid_pid")
  u1=$(cpu_micros "$UP_PID")
  if [ "$rc" = 0 ]; then
    # CPU per call is over every call sent, the unrecorded warmup included.
    local calls
    calls=$(sed -n 's/.*"calls_sent":\([0-9]*\).*/\1/p' "$RESULTS/$label.$target.$run.json")
    sed -n 's/.*"count":\([0-9]*\).*"unfinished":\([0-9]*\).*"achieved_rate":\([0-9.]*\).*"p50":\([0-9.]*\).*"p99":\([0-9.]*\).*/\1 calls (\2 unanswered), \3 calls\/s, p50 \4 us, p99 \5 us/p' \
      "$RESULTS/$label.$target.$run.json" | tr -d '\n'
    awk -v m=$((m1 - m0)) -v u=$((u1 - u0)) -v n="$calls" -v who="$mid_name" 'BEGIN {
      if (n > 0) printf ", CPU/call: %s %.0f us, upstream %.0f us\n", who, m / n, u / n; else print "" }'
    # Mandate's CPU per call, for summaries that compare two Mandate configurations.
    awk -v m=$((m1 - m0)) -v n="$calls" 'BEGIN { if (n > 0) printf "%.1f\n", m / n }' \
      > "$RESULTS/$label.$target.$run.cpu"
    grep -hE "OVERLOADED|DID NOT SUSTAIN" "$RESULTS/$label.$target.$run.err" | sed 's/^/   /' || true
  else
    FAILED=1
    echo "FAILED"
    cat "$RESULTS/$label.$target.$run.err" >&2
  fi
}

# --- budget: 64 callers on one hot budget vs the same calls with no budget ---------------------

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# check_budget_audit SIDE RUN AUDIT-DIR: every call the load generator sent left a call.decided,
# admitted, and a call.completed; on the hot-budget side each carries its reservation on `hot`
# (call.decided) and its settlement (call.completed); on the no-budget side none does. Counts
# records (lines) by their canonical keys: "type", and "budget":"hot" in a budgets entry.
check_budget_audit() {
  local side=$1 run=$2 audit=$3 sent counts
  sent=$(sed -n 's/.*"calls_sent":\([0-9]*\).*/\1/p' "$RESULTS/$side.governed.$run.json")
  counts=$(cat "$audit"/audit-*.jsonl | awk '
    index($0, "\"type\":\"call.decided\"") {
      d++
      if (index($0, "\"decision\":\"allow\"")) a++
      if (index($0, "\"budget\":\"hot\"")) r++
    }
    index($0, "\"type\":\"call.completed\"") { c++; if (index($0, "\"budget\":\"hot\"")) s++ }
    index($0, "budget_exceeded") || index($0, "\"type\":\"budget.exceeded\"") { x++ }
    END { printf "%d %d %d %d %d %d\n", d, a, r, c, s, x }')
  local decided allowed reserved completed settled exceeded
  read -r decided allowed reserved completed settled exceeded <<< "$counts"
  local want=$allowed
  [ "$side" = hot-budget ] || want=0
  printf '   %-11s audit   run %s ... %s calls sent; call.decided %s (allowed %s, with a reservation on hot %s), call.completed %s (settled on hot %s), budget_exceeded %s' \
    "$side" "$run" "$sent" "$decided" "$allowed" "$reserved" "$completed" "$settled" "$exceeded"
  if [ -n "$sent" ] && [ "$decided" = "$sent" ] && [ "$allowed" = "$decided" ] &&
     [ "$completed" = "$allowed" ] && [ "$reserved" = "$want" ] && [ "$settled" = "$want" ] &&
     [ "$exceeded" = 0 ]; then
    echo ": ok"
    if [ "$side" = hot-budget ]; then BUDGET_RESERVED_TOTAL=$((BUDGET_RESERVED_TOTAL + reserved)); fi
  else
    echo ": MISMATCH"
    echo "!!!!! run-bench: $side run $run: the audit log does not show one reservation per admitted call" >&2
    FAILED=1
  fi
}

if [ "$RUN_BUDGET" = 1 ]; then
  HOT_BUDGET='{ name: hot, metric: calls, limit: 1000000000, window: 1d, scope: agent }'
  RESULTS=$WORK/results-budget
  RUN_CONNS=$BUDGET_CONNS
  BUDGET_RESERVED_TOTAL=0
  mkdir -p "$RESULTS"
  probe_disk "$WORK"
  echo "== budget: $RUNS round(s) of no-budget and hot-budget (order alternating); each test: a fresh"
  echo "   Mandate and data dir, ${WARMUP}s warmup + ${DURATION}s measured at saturation, $BUDGET_CONNS connections (one"
  echo "   MCP session each, one agent), upstream max_inflight $BUDGET_CONNS, Accept: $ACCEPT"
  echo "   hot-budget adds: budgets: [ $HOT_BUDGET ]"
  for run in $(seq 1 "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then ORDER="no-budget hot-budget"; else ORDER="hot-budget no-budget"; fi
    for side in $ORDER; do
      extra=""
      if [ "$side" = hot-budget ]; then extra=$(printf 'budgets:\n  - %s' "$HOT_BUDGET"); fi
      write_config "$WORK/$side.$run.yaml" "./data-$side-$run" "$BUDGET_CONNS" "$extra"
      start_mandate "$WORK/$side.$run.yaml" "$WORK/mandate-$side-$run"
      if [ "$side" = hot-budget ] && ! grep -q "budgets: 1 enforced" "$WORK/mandate-$side-$run.log"; then
        echo "!!!!! run-bench: mandate did not report 'budgets: 1 enforced'; log:" >&2
        cat "$WORK/mandate-$side-$run.log" >&2
        FAILED=1
      fi
      run_one "$side" governed "$run" --mode closed --max-calls 5000000
      stop_mandate
      check_budget_audit "$side" "$run" "$WORK/data-$side-$run/audit"
    done
  done

  echo
  echo "== Budgets: $BUDGET_CONNS callers on one hot budget vs no budget ($(nproc) CPUs, load average at end $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "   disk write+fdatasync p50 ${FSYNC_P50} us, p99 ${FSYNC_P99} us, max ${FSYNC_MAX} us; agents' Accept: $ACCEPT"
  printf '   %-6s | %21s | %21s | %21s | %21s | %7s\n' round "calls/s" "p50 us" "p99 us" \
    "Mandate CPU/call us" "hot/no"
  printf '   %-6s | %10s %10s | %10s %10s | %10s %10s | %10s %10s | %7s\n' "" no-budget hot-budget \
    no-budget hot-budget no-budget hot-budget no-budget hot-budget thruput
  field() { sed -n "s/.*\"$2\":\\([0-9.]*\\).*/\\1/p" "$1"; }
  : > "$WORK/budget-rows"
  for run in $(seq 1 "$RUNS"); do
    off=$RESULTS/no-budget.governed.$run
    on=$RESULTS/hot-budget.governed.$run
    if [ ! -s "$off.json" ] || [ ! -s "$on.json" ]; then continue; fi  # a failed test: no pair
    echo "$(field "$off.json" achieved_rate) $(field "$on.json" achieved_rate)" \
      "$(field "$off.json" p50) $(field "$on.json" p50) $(field "$off.json" p99)" \
      "$(field "$on.json" p99) $(cat "$off.cpu" 2>/dev/null || echo nan)" \
      "$(cat "$on.cpu" 2>/dev/null || echo nan)" >> "$WORK/budget-rows"
  done
  ROW_FORMAT='   %-6s | %10.0f %10.0f | %10.0f %10.0f | %10.0f %10.0f | %10.0f %10.0f | %6.3fx\n'
  awk -v f="$ROW_FORMAT" '{ printf f, NR, $1, $2, $3, $4, $5, $6, $7, $8, ($1 > 0 ? $2 / $1 : 0) }' \
    "$WORK/budget-rows"
  if [ -s "$WORK/budget-rows" ]; then
    col() { awk -v c="$1" '{ print $c }' "$WORK/budget-rows" | median; }
    RATIO=$(awk '{ print ($1 > 0 ? $2 / $1 : 0) }' "$WORK/budget-rows" | median)
    # shellcheck disable=SC2059  # the row format is ours
    printf "$ROW_FORMAT" median \
      "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)" "$(col 8)" "$RATIO"
    echo "   (medians over rounds; thruput = hot-budget / no-budget calls/s of the same round; CPU/call over"
    echo "   every call sent, warmup included)"
    awk -v r="$RATIO" -v max="$BUDGET_LOSS_MAX_PERCENT" -v n="$(wc -l < "$WORK/budget-rows")" 'BEGIN {
      loss = (1 - r) * 100
      printf "verdict: throughput hot-budget/no-budget = %.3fx (median of %d rounds), loss %.1f%%%s (target <= %d%%): %s\n",
        r, n, loss, (loss < 0 ? ", i.e. the budget side was faster (run-to-run noise)" : ""), max,
        (loss <= max ? "MET" : "MISSED") }'
    echo "   audit: $BUDGET_RESERVED_TOTAL call.decided records of the hot-budget tests carried a reservation on hot"
  else
    echo "!!!!! no complete round: no ratio" >&2
    FAILED=1
  fi
  RESULTS=$WORK/results
  RUN_CONNS=$CONNS
  if [ -z "$MCP_SCENARIOS" ]; then
    if [ "$FAILED" != 0 ]; then
      echo "!!!!! run-bench: the budget scenario had errors; see above" >&2
      exit 1
    fi
    exit 0
  fi
  echo
fi

# --- governed vs direct ------------------------------------------------------------------------

write_config "$WORK/mandate.yaml" ./data "$CONNS"
CFG=$WORK/mandate.yaml
start_mandate "$CFG" "$WORK/mandate"
echo "== mandate ready: agent listener 127.0.0.1:$AGENT_PORT (audit log in $WORK/data/audit)"
probe_disk "$WORK/data"
probe_switch
# The floor under the saturation scenario: the same calls through Mandate's own HTTP server and
# client with no governance (bench/null_proxy.cc). BENCH_FLOOR=0 leaves it out.
FLOOR_URL=""
if [ "${BENCH_FLOOR:-1}" = 1 ] && [[ " $MCP_SCENARIOS " == *" saturation "* ]]; then
  "$NULL_PROXY" --upstream "$DIRECT_URL" > "$WORK/null-proxy.log" 2>&1 &
  FLOOR_PID=$!
  FLOOR_URL=http://127.0.0.1:$(wait_port "$WORK/null-proxy.log" "ready on ")/mcp
  echo "== floor: the null proxy (Mandate's HTTP server and client, no governance) on $FLOOR_URL"
fi

echo "== $RUNS run(s); each test: ${WARMUP}s warmup + ${DURATION}s measured, $CONNS connections (one MCP session each), Accept: $ACCEPT"
for run in $(seq 1 "$RUNS"); do
  # Alternate which side goes first, so a drift of the machine's state does not favour one.
  if [ $((run % 2)) = 1 ]; then ORDER="direct governed"; else ORDER="governed direct"; fi
  for scenario in $MCP_SCENARIOS; do
    targets=$ORDER
    if [ "$scenario" = saturation ] && [ -n "$FLOOR_URL" ]; then targets=${ORDER/ / floor }; fi
    for target in $targets; do
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
echo "   disk write+fdatasync p50 ${FSYNC_P50} us, p99 ${FSYNC_P99} us, max ${FSYNC_MAX} us; agents' Accept: $ACCEPT"
echo "   thread wake-up round trip p50 ${SWITCH_ONE_CPU} us on one CPU, ${SWITCH_TWO_CPU:-n/a} us across two; syscall ${SYSCALL_NS} ns"
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
