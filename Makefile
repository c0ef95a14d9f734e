# The two commands of a fresh machine (README): `make run` and `make test`.
# Everything else here is a building block of those two.
.PHONY: all deps build build-asan run test test-unit test-integration test-e2e bench differential clean

BUILD      := build/release
BUILD_ASAN := build/asan-ubsan
QUICKSTART ?= quickstart

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release

build-asan: deps
	@cmake --preset asan-ubsan >/dev/null
	@cmake --build --preset asan-ubsan

# Starts Mandate on the embedded default (SQLite + local audit log) with the quickstart config.
run: build
	@[ -f $(QUICKSTART)/mandate.yaml ] || $(BUILD)/mandate init $(QUICKSTART) \
	  --mcp-command node \
	  --mcp-command $(CURDIR)/tests/e2e/node_modules/@modelcontextprotocol/server-everything/dist/index.js \
	  --mcp-command stdio
	@exec $(BUILD)/mandate serve -c $(QUICKSTART)/mandate.yaml

# Unit tests under ASan+UBSan, then integration and end-to-end tests against the release build.
test: build build-asan
	@scripts/run-tests.sh

bench: build
	@scripts/run-bench.sh

# The Cedar engine against the reference implementation (@cedar-policy/cedar-wasm), 1,000,000
# random cases on two worker threads; `make test` runs 10,000 (docs/policy.md).
differential: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release --target cedar_decide
	@node tests/differential/run.mjs --cases 1000000 --jobs 2

clean:
	rm -rf build
