# The two commands of README.md: `make run` and `make test`. Each installs what it needs.
PRESET ?= release
JOBS ?= $(shell nproc)

.PHONY: all deps build run test unit bench asan clean

all: build

deps:
	bash scripts/install-deps.sh build

build: deps
	cmake --preset $(PRESET) >/dev/null
	cmake --build --preset $(PRESET) -j $(JOBS)

run: build
	bash scripts/run.sh

# Everything: unit tests, in-process API tests, the integration and real-client suites.
test: deps
	bash scripts/install-deps.sh test
	cmake --preset $(PRESET) >/dev/null
	cmake --build --preset $(PRESET) -j $(JOBS)
	ctest --preset $(PRESET) -j 2

# Only the C++ tests (fast).
unit: build
	ctest --preset $(PRESET) -j 2 -E '^js_'

# Load benchmarks (state/config, engagement vs redis-benchmark, viewer fan-out, GameLink); see
# bench/README.md.
bench: build
	bash scripts/install-deps.sh bench
	bash bench/http_bench.sh
	bash bench/vote_bench.sh
	bash bench/fanout_bench.sh
	bash bench/gamelink_bench.sh

asan:
	$(MAKE) test PRESET=asan-ubsan

clean:
	rm -rf build
