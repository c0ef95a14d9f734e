#!/usr/bin/env bash
# Runs every test: unit tests (ASan+UBSan build), integration tests, the end-to-end suite and
# 10,000 differential cases against the Cedar reference (release build), then a short bounded
# run of every fuzz target. Called by `make test`; fails on the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== unit tests (asan-ubsan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build/asan-ubsan -L unit --output-on-failure -j2

echo "== integration tests (release)"
ctest --test-dir build/release -L integration --output-on-failure

echo "== policy golden cases (tests/policy/*.ptest, release build)"
build/release/mandate policy test tests/policy/*.ptest

if [ -f tests/e2e/package.json ]; then
  echo "== end-to-end tests (node --test, release build)"
  (cd tests/e2e && MANDATE_BIN="$PWD/../../build/release/mandate" npm test --silent)
  echo "== differential: the Cedar engine against @cedar-policy/cedar-wasm, 10,000 cases (release)"
  node tests/differential/run.mjs --cases 10000
fi
echo "== fuzz targets, ${MANDATE_FUZZ_SECONDS:-10} s each (clang, libFuzzer + ASan/UBSan)"
scripts/run-fuzz.sh "${MANDATE_FUZZ_SECONDS:-10}"

echo "== all tests passed"
