# Tessera: the two commands of the quick start are `make demo` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

FUZZ_SECONDS ?= 15
FUZZERS = shim_config_fuzz shim_limits_file_fuzz fakegpu_config_fuzz alibaba_csv_fuzz mix_scenario_fuzz node_config_fuzz kube_watch_fuzz kube_config_fuzz admission_review_fuzz pod_annotations_fuzz replay_input_fuzz

.PHONY: all deps build demo test test-fast test-asan test-tsan test-fuzz bench format format-check tidy clean \
	cluster cluster-down test-cluster

all: build

deps:
	./scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

demo: deps build
	./scripts/demo.sh $(BUILD)

# Everything CI runs: the format check; the normal build's tests; clang-tidy over src/; every
# test again under ASan+UBSan; short libFuzzer runs of every parser; the region and the limiter
# under TSan; then the suite on the local Kubernetes cluster (built from Debian's source package the first time).
test: deps format-check test-fast tidy test-asan test-fuzz test-tsan test-cluster

# The cluster's tests (label `cluster`) need a running cluster: `make test-cluster`.
test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE cluster

test-asan:
	cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTESSERA_SANITIZE=address,undefined
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS) -LE cluster

test-tsan:
	cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTESSERA_SANITIZE=thread
	cmake --build build-tsan -j $(JOBS) --target tessera_region_test tessera_limiter_threads_test
	cd build-tsan && ctest --output-on-failure -L tsan

# Each parser's fuzz target runs FUZZ_SECONDS from its seed corpus (fuzz/corpus/<name>/).
test-fuzz:
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTESSERA_FUZZ=ON -DTESSERA_WERROR=OFF
	cmake --build build-fuzz -j $(JOBS) --target $(FUZZERS)
	@for fuzzer in $(FUZZERS); do \
	  mkdir -p build-fuzz/corpus/$$fuzzer; \
	  if ./build-fuzz/bin/$$fuzzer -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	       build-fuzz/corpus/$$fuzzer fuzz/corpus/$$fuzzer > build-fuzz/$$fuzzer.log 2>&1; then \
	    echo "fuzz: $$fuzzer ok ($$(grep -o 'stat::number_of_executed_units: [0-9]*' build-fuzz/$$fuzzer.log | grep -o '[0-9]*$$') inputs in $(FUZZ_SECONDS) s)"; \
	  else tail -n 40 build-fuzz/$$fuzzer.log; echo "fuzz: $$fuzzer FAILED"; exit 1; fi; \
	done

# The local Kubernetes cluster with fake GPUs (deploy/dev-cluster/cluster.yaml, or CLUSTER=FILE;
# CLUSTER_FLAGS=--no-agent starts it without tessera-node). Kubernetes 1.20 and tessera-cri are
# built by scripts/cluster/build-kubernetes.sh (cached under ~/.cache/tessera).
CLUSTER ?= deploy/dev-cluster/cluster.yaml
CLUSTER_FLAGS ?=
CLUSTER_TOOL = /usr/bin/python3 $(CURDIR)/scripts/cluster/cluster.py --build-dir $(abspath $(BUILD))

cluster:
	./scripts/cluster/build-kubernetes.sh
	$(MAKE) build
	$(CLUSTER_TOOL) up --cluster $(CLUSTER) $(CLUSTER_FLAGS)

cluster-down:
	$(CLUSTER_TOOL) down

# Starts the cluster, runs the tests labelled `cluster`, and always stops the cluster; the
# status is the tests' (or up's, or down's when only it failed).
test-cluster:
	./scripts/cluster/build-kubernetes.sh
	$(MAKE) build
	@trap 'status=$$?; $(CLUSTER_TOOL) down || { [ $$status -ne 0 ] || status=1; }; exit $$status' EXIT; \
	trap 'exit 130' INT TERM; \
	$(CLUSTER_TOOL) up --cluster $(CLUSTER) $(CLUSTER_FLAGS) && \
	(cd $(BUILD) && TESSERA_CLUSTER_REQUIRED=1 ctest --output-on-failure -L cluster)

bench: build
	./scripts/bench-shim.sh $(BUILD)
	$(BUILD)/bin/tessera_placement_bench

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

# Every C++ file is as clang-format (.clang-format) writes it; `make format` makes it so.
format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.cc' '*.h') && \
	  echo "format-check: $$(git ls-files '*.cc' '*.h' | wc -l) files as clang-format writes them"

# clang-tidy (.clang-tidy) over src/, every warning an error.
tidy: build
	./scripts/tidy.sh $(BUILD) $(JOBS)

clean:
	rm -rf build build-asan build-tsan build-fuzz build-gpu
