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
#   make asan     the unit and stress tests under AddressSanitizer+UBSan
#   make tsan     the unit and stress tests under ThreadSanitizer
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
CMAKE_FLAGS ?=
ifeq ($(CI),true)
CMAKE_FLAGS += -DNEAP_WERROR=ON
endif

.PHONY: all build demo test bench bench-quick bench-micro bench-programs asan tsan clean

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

bench-programs: build
	bash bench/programs.sh

# Sanitizer builds test the native API (no malloc override); each uses its
# own build tree.
asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNEAP_SANITIZE=address $(CMAKE_FLAGS)
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && NEAP_STRESS_SCALE=0.25 ctest --output-on-failure -j $(JOBS) -L 'unit|stress'

tsan:
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNEAP_SANITIZE=thread $(CMAKE_FLAGS)
	$(CMAKE) --build build-tsan -j $(JOBS)
	# test_pagealloc is single-threaded (the heap lock serialises the page
	# allocator): ThreadSanitizer has nothing to find there, ASan runs it.
	cd build-tsan && NEAP_STRESS_SCALE=0.25 ctest --output-on-failure -j $(JOBS) -L 'unit|stress' -E test_pagealloc

clean:
	rm -rf $(BUILD) build-asan build-tsan
