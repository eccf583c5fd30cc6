#!/usr/bin/env bash
# The GPU machine's check, as one script: build with CUDA, run the CUDA-vs-CPU parity tests, the
# whole ctest suite and the benchmarks, then print a short table. Usage: bash tools/gpu_check.sh
# (also `make gpu-check`). Works on a machine without a GPU too: the CUDA rows then say SKIPPED.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
ARCH=${IVL_CUDA_ARCHITECTURES:-90}
LOG=$PWD/$BUILD/gpu_check
mkdir -p "$LOG"

declare -a rows
row() { rows+=("$(printf '%-34s %s' "$1" "$2")"); }

gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
echo "GPU: ${gpu:-none visible to nvidia-smi}"
row "GPU" "${gpu:-none}"

# Headers this machine may lack arrive as Debian packages in .gpu-deps/ (tools/gpu_deps.sh); unpack
# them into a prefix and point CMake and pkg-config at it.
prefix_args=()
if ls .gpu-deps/*.deb >/dev/null 2>&1; then
  PREFIX=$PWD/$BUILD/deps-prefix
  mkdir -p "$PREFIX"
  for deb in .gpu-deps/*.deb; do dpkg -x "$deb" "$PREFIX"; done
  export PKG_CONFIG_PATH=$PREFIX/usr/lib/x86_64-linux-gnu/pkgconfig PKG_CONFIG_SYSROOT_DIR=$PREFIX
  export LD_LIBRARY_PATH=$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  prefix_args=(-DCMAKE_PREFIX_PATH="$PREFIX/usr")
  row "carried packages" "$(ls .gpu-deps/*.deb | wc -l) unpacked into $BUILD/deps-prefix"
fi

if cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DIVL_CUDA=ON -DIVL_CUDA_ARCHITECTURES="$ARCH" "${prefix_args[@]}" >"$LOG/configure.log" 2>&1 &&
   cmake --build "$BUILD" -j "$(nproc)" >"$LOG/build.log" 2>&1; then
  row "build (CUDA arch $ARCH)" "ok ($(grep -o 'CUDA backend [A-Z]*' "$LOG/configure.log"))"
else
  tail -40 "$LOG/configure.log" "$LOG/build.log"
  row "build" "FAILED (see $LOG)"
  printf '\n%s\n' "${rows[@]}"
  exit 1
fi

"$BUILD/ivl" devices | tee "$LOG/devices.txt"

"$BUILD/tests/ivl_cuda_tests" 2>&1 | tee "$LOG/cuda_tests.txt"
rc=${PIPESTATUS[0]}
case $rc in
  0) row "CUDA parity tests" "PASS ($(grep -o 'All tests passed.*' "$LOG/cuda_tests.txt"))" ;;
  77) row "CUDA parity tests" "SKIPPED (no device)" ;;
  *) row "CUDA parity tests" "FAIL ($(grep -o 'test cases:.*' "$LOG/cuda_tests.txt"))" ;;
esac

"$BUILD/ivl" gradcheck >"$LOG/gradcheck.txt" 2>&1
row "ivl gradcheck (all ops)" "$(tail -1 "$LOG/gradcheck.txt"); to_device: $(grep '^to_device' "$LOG/gradcheck.txt" | awk '{print $5}')"

(cd "$BUILD" && ctest -j "$(nproc)" >"$LOG/ctest.txt" 2>&1)
row "ctest" "$(grep -E 'tests passed' "$LOG/ctest.txt")"

"$BUILD/ivl" bench gemm 2>&1 | tee "$LOG/bench.txt"
while IFS= read -r line; do row "bench cpu $(echo "$line" | awk '{print $1"x"$3"x"$5}')" "$(echo "$line" | awk '{print "engine " $6 " GF/s, cblas " $7 ", engine/cblas " $8}')"; done \
  < <(grep -E '^[0-9]+ x [0-9]+ x [0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$LOG/bench.txt")
while IFS= read -r line; do row "bench gpu $(echo "$line" | awk '{print $1"x"$3"x"$5}')" "$(echo "$line" | awk '{print $6 " GF/s"}')"; done \
  < <(grep -E '^[0-9]+ x [0-9]+ x [0-9]+ +[0-9.]+$' "$LOG/bench.txt")

printf '\n==== gpu_check summary ====\n'
printf '%s\n' "${rows[@]}"
