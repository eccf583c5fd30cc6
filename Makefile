# Thin wrapper over CMake: `make`, `make test`, `make bench`, `make gpu-check`, `make fuzz`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_ARGS ?=

.PHONY: all configure test bench gpu-check fuzz clean

all: configure
	cmake --build $(BUILD) -j $(JOBS)

configure:
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

# ctest does not show a skipped test's output: print the reason each skipped test gave.
test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)
	@grep -h '^SKIPPED' $(BUILD)/Testing/Temporary/LastTest.log || true

bench: all
	$(BUILD)/ivl bench gemm

gpu-check:
	bash tools/gpu_check.sh

# A bounded libFuzzer run over the safetensors header parser (clang; its own build folder).
FUZZ_SECONDS ?= 60
fuzz:
	bash tools/setup.sh --fuzz
	cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
	  -DIVL_FUZZ=ON -DIVL_CUDA=OFF -DBUILD_TESTING=OFF
	cmake --build build-fuzz -j $(JOBS) --target fuzz_safetensors
	mkdir -p build-fuzz/corpus
	@# The seed: a valid file with metadata and two tensors (142 bytes of JSON and 2 spaces of padding, 16 data bytes).
	printf '\220\000\000\000\000\000\000\000%s%2s\001\002\003\004\005\006\007\010\011\012\013\014\015\016\017\020' \
	  '{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}' '' \
	  > build-fuzz/corpus/seed-two-tensors
	build-fuzz/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -dict=tests/fuzz/safetensors.dict build-fuzz/corpus

clean:
	rm -rf $(BUILD) build-fuzz
