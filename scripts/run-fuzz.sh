#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`: clang, ASan + UBSan, see fuzz/CMakeLists.txt)
# and runs each one for N seconds (default 10) over a copy of its committed corpus and
# regressions, in a temporary directory: the committed corpus never grows. Fails when any
# target finds a crash, a sanitizer report, a leak, a timeout (> 5 s for one input) or an
# out-of-memory (> 2048 MB); the reproducer is kept in build/fuzz/findings/<target>/ and the
# command to replay it is printed.
#
#   scripts/run-fuzz.sh            # 10 s per target
#   scripts/run-fuzz.sh 300        # 5 min per target
#   FUZZ_TARGETS="json_parse policy_parse" scripts/run-fuzz.sh 60
#
# Needs clang and libclang-rt-14-dev (scripts/debian-packages.txt; scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

seconds="${1:-10}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [seconds-per-target]   (a positive integer, default 10)" >&2
  exit 2
fi

if ! command -v clang++ >/dev/null 2>&1; then
  echo "run-fuzz: clang++ not found; run scripts/install-deps.sh (Debian: clang, libclang-rt-14-dev)" >&2
  exit 1
fi
# libFuzzer's runtime ships separately from clang on Debian.
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    clang++ -x c++ -fsanitize=fuzzer - -o /dev/null >/dev/null 2>&1; then
  echo "run-fuzz: clang cannot link libFuzzer (-fsanitize=fuzzer); run scripts/install-deps.sh" \
       "(Debian package libclang-rt-14-dev)" >&2
  exit 1
fi

# Every fuzz/<name>/ with a <name>.cc is a target, built as fuzz_<name>.
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  targets=()
  for d in fuzz/*/; do
    name="$(basename "$d")"
    [ -f "fuzz/$name/$name.cc" ] && targets+=("$name")
  done
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "run-fuzz: no fuzz targets found under fuzz/" >&2
  exit 1
fi

echo "== configure and build (preset fuzz): ${targets[*]}"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target "${targets[@]/#/fuzz_}"

# Scratch space: tmpfs when there is one (the mcp_message target writes an audit log with
# fdatasync on every record), else $TMPDIR or /tmp. Removed on exit.
base="${TMPDIR:-/tmp}"
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then base=/dev/shm; fi
work="$(mktemp -d "$base/mandate-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

findings="$root/build/fuzz/findings"
failed=()
summary=()
for t in "${targets[@]}"; do
  bin="$root/build/fuzz/fuzz/fuzz_$t"
  dir="$work/$t"
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
  rm -rf "${findings:?}/$t"  # findings of an earlier run are stale
  for src in "fuzz/$t/corpus" "fuzz/$t/regressions"; do
    if [ -d "$src" ] && [ -n "$(ls -A "$src")" ]; then cp "$src"/* "$dir/corpus/"; fi
  done
  echo "== fuzz $t for ${seconds}s ($(ls "$dir/corpus" | wc -l) seeds)"
  rc=0
  (
    cd "$dir"
    TMPDIR="$dir/tmp" \
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
      "$bin" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
             -artifact_prefix="$dir/artifacts/" -print_final_stats=1 "$dir/corpus" \
             >"$dir/log" 2>&1
  ) || rc=$?
  runs="$(grep -Eo '^stat::number_of_executed_units: *[0-9]+' "$dir/log" | grep -Eo '[0-9]+$' || true)"
  speed="$(grep -Eo '^stat::average_exec_per_sec: *[0-9]+' "$dir/log" | grep -Eo '[0-9]+$' || true)"
  cov="$(grep -Eo 'cov: [0-9]+' "$dir/log" | tail -1 | grep -Eo '[0-9]+' || true)"
  if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$dir/artifacts")" ]; then
    failed+=("$t")
    mkdir -p "$findings/$t"
    cp "$dir/log" "$findings/$t/log"
    if [ -n "$(ls -A "$dir/artifacts")" ]; then cp "$dir/artifacts"/* "$findings/$t/"; fi
    echo "!! $t FAILED (exit $rc); log and reproducer in $findings/$t/:"
    grep -E 'ERROR:|SUMMARY:|runtime error|MANDATE_CHECK|Test unit written|deadly signal' \
      "$dir/log" | head -20 || true
    for a in "$findings/$t"/*; do
      case "$a" in */log) ;; *) echo "   replay: build/fuzz/fuzz/fuzz_$t ${a#"$root"/}" ;; esac
    done
    summary+=("$(printf '%-14s FAILED  runs=%s exec/s=%s cov=%s' "$t" "${runs:-?}" "${speed:-?}" "${cov:-?}")")
  else
    summary+=("$(printf '%-14s ok      runs=%s exec/s=%s cov=%s' "$t" "${runs:-?}" "${speed:-?}" "${cov:-?}")")
  fi
done

echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
echo "== no crash found"
