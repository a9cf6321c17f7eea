# The short commands. Everything real is in CMakeLists.txt.
#   make          build build/libneap.so, build/libneap.a and the tests
#   make demo     build, then run the demo
#   make test     build, then run every test (ctest)
#   make bench    build, then run the benchmark suite: every workload under
#                 glibc, jemalloc, tcmalloc, mimalloc and neap (bench/suite.py;
#                 report in build/bench/suite, copied to bench/results)
#   make bench-quick      the same, small (under 2 minutes)
#   make bench-micro      the malloc/free microbenchmarks (bench/run-micro.sh)
#   make bench-programs   real programs (python, sqlite, git, gcc, perl, lua)
#                 under glibc, mimalloc and neap: wall time and peak RSS
#   make asan     the unit, stress and fuzz tests under AddressSanitizer+UBSan
#                 (each random fuzz slice ASAN_FUZZ_SECONDS long)
#   make tsan     the same under ThreadSanitizer (TSAN_FUZZ_SECONDS)
#   make fuzz     the fuzzing campaign: libFuzzer (clang, ASan+UBSan) on the
#                 API and text targets, then the 4-thread API fuzzer under
#                 TSan, FUZZ_SECONDS in all (default 600); new inputs that
#                 reach new code collect in build-fuzz/corpus
#                 (tests/fuzz/README.md)
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
CMAKE_FLAGS ?=
ifeq ($(CI),true)
CMAKE_FLAGS += -DNEAP_WERROR=ON
endif

.PHONY: all build demo test bench bench-quick bench-micro bench-gc bench-programs bench-redis asan tsan fuzz clean

all: build

$(BUILD)/CMakeCache.txt:
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	$(CMAKE) --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/neap demo -o $(BUILD)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

BENCH_FLAGS ?=
bench: build
	python3 bench/suite.py --install --reps 5 --results bench/results $(BENCH_FLAGS)

bench-quick: build
	python3 bench/suite.py --install --quick $(BENCH_FLAGS)

bench-micro: build
	sh bench/run-micro.sh

# The collector benchmarks: binary-trees and GCBench, Boehm GC against
# malloc/free under neap and glibc (bench/gc.py; libgc-dev is installed
# when missing and the runner is root).
bench-gc:
	@dpkg -s libgc-dev >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgc-dev >/dev/null
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	$(MAKE) --no-print-directory build
	python3 bench/gc.py --build $(BUILD) --reps 3 --results bench/results $(BENCH_GC_FLAGS)

bench-programs: build
	bash bench/programs.sh

# redis-server under each allocator: server instructions and CPU time
# (bench/redis.sh; redis-server is installed when missing and the runner is root).
bench-redis: build
	bash bench/redis.sh

ASAN_FUZZ_SECONDS ?= 45
TSAN_FUZZ_SECONDS ?= 25
FUZZ_SECONDS ?= 600

# Sanitizer builds test the native API (no malloc override); each uses its
# own build tree. The ASan build's library also asserts its cheap internal
# invariants (NEAP_DEBUG=1: the span state machine among them).
asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNEAP_SANITIZE=address -DNEAP_DEBUG=1 $(CMAKE_FLAGS)
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && NEAP_STRESS_SCALE=0.25 NEAP_FUZZ_SECONDS=$(ASAN_FUZZ_SECONDS) \
	  ctest --output-on-failure -j $(JOBS) -L 'unit|stress|fuzz'

tsan:
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNEAP_SANITIZE=thread $(CMAKE_FLAGS)
	$(CMAKE) --build build-tsan -j $(JOBS)
	# test_pagealloc is single-threaded (the heap lock serialises the page
	# allocator): ThreadSanitizer has nothing to find there, ASan runs it.
	cd build-tsan && NEAP_STRESS_SCALE=0.25 NEAP_FUZZ_SECONDS=$(TSAN_FUZZ_SECONDS) \
	  ctest --output-on-failure -j $(JOBS) -L 'unit|stress|fuzz' -E test_pagealloc

fuzz:
	$(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DNEAP_SANITIZE=address -DNEAP_LIBFUZZER=ON $(CMAKE_FLAGS)
	$(CMAKE) --build build-fuzz -j $(JOBS) --target fuzz_api fuzz_text
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNEAP_SANITIZE=thread $(CMAKE_FLAGS)
	$(CMAKE) --build build-tsan -j $(JOBS) --target fuzz_api
	sh tests/fuzz/campaign.sh build-fuzz build-tsan $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
