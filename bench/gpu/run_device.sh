#!/usr/bin/env bash
# The GPU job for the device machine (a bare box with nvcc and cmake): builds the minimal
# configuration with the carried zstd/xxhash packages, runs the GPU tests (and once under
# compute-sanitizer), then the benchmark. Logs go to $OUT.
# Usage: bench/gpu/run_device.sh [test|bench|all|profile]   (profile: ncu on the batch-1 kernels)
set -euo pipefail
what=${1:-all}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
DEPS=/tmp/spqr-deps
mkdir -p $DEPS
for f in .carry/debs/*.deb; do dpkg -x "$f" $DEPS; done
export LD_LIBRARY_PATH=$DEPS/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
cmake -S . -B build-gpu -DSPQR_MINIMAL=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH=$DEPS/usr -DPKG_CONFIG_EXECUTABLE=/nonexistent > "$OUT/configure.log" 2>&1 || { cat "$OUT/configure.log"; exit 1; }
cmake --build build-gpu -j16 2>&1 | grep -E "error|warning" || true
real=""
[ -f .carry/real_layer0.spqr ] && real=.carry/real_layer0.spqr
if [ "$what" = profile ]; then
  # 4096² w3 1% outliers and w4, batch 1: one launch each after warm-up (bench_gpu --quick order)
  ncu --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \
    --section LaunchStats --kernel-name regex:matmul_kernel --launch-skip 10 --launch-count 1 \
    ./build-gpu/bench/gpu/bench_gpu --quick > "$OUT/ncu.txt" 2>&1 || true
  grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Registers|Stall|Warp Cycles|Theoretical Occupancy|Block Limit|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Issued" "$OUT/ncu.txt" | head -60
  exit 0
fi
if [ "$what" != bench ]; then
  echo "== test_gpu =="
  SPQR_REAL_SPQR=$real ./build-gpu/tests/gpu/test_gpu > "$OUT/test_gpu.log" 2>&1 || true
  grep -E "FAIL|passed" "$OUT/test_gpu.log" | tail -25
  echo "== compute-sanitizer (memcheck, quick subset) =="
  SPQR_GPU_QUICK=1 SPQR_REAL_SPQR=$real timeout 180 compute-sanitizer --tool memcheck --error-exitcode 9 \
    ./build-gpu/tests/gpu/test_gpu > "$OUT/sanitizer.log" 2>&1; echo "compute-sanitizer exit $?"
  grep -E "ERROR SUMMARY|passed" "$OUT/sanitizer.log" | tail -3
fi
if [ "$what" != test ]; then
  echo "== bench_gpu =="
  ./build-gpu/bench/gpu/bench_gpu | tee "$OUT/bench_gpu.md"
fi
