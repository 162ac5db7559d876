#!/usr/bin/env bash
# The GPU job for the device machine (a bare box with nvcc and cmake): builds the minimal
# configuration with the carried zstd/xxhash packages, runs the GPU tests (and once under
# compute-sanitizer), then the benchmark. Logs go to $OUT.
# Usage: bench/gpu/run_device.sh [test|bench|all|profile|tune|probe|check|build|stack]
#   check: the quick subset of the GPU tests (SPQR_GPU_QUICK, 2-minute timeout) and nothing else.
#   stack: the quick subset with the real model's groups, and bench_gpu --stacked (see below).
#   profile: ncu on one batch-1 kernel (KERNEL regex, SHAPE, SKIP launches) and the SASS; tune: the
#   tensor-core kernel's compile-time variants (SPQR_MMA_WARPS_PER_SM, SPQR_MMA_MINBLOCKS).
#   probe: builds with other CUDA flags beside the library's (PROBES, PROBE_* below).
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
if [ "$what" = build ]; then # only the build (for a command line that runs its own measurements)
  exit 0
fi
if [ "$what" = check ]; then
  rc=0; SPQR_GPU_QUICK=1 timeout 120 ./build-gpu/tests/gpu/test_gpu > "$OUT/check.log" 2>&1 || rc=$?
  echo "test_gpu (quick subset) exit $rc"; grep -E "FAIL|passed" "$OUT/check.log" | tail -15
  exit $rc
fi
if [ "$what" = stack ]; then
  # tensors of one input uploaded stacked (spqr_gpu_upload_stacked): the quick GPU tests with the
  # real model's q/k/v and gate/up groups, the example, then bench_gpu --stacked (batch 1, 4, 16
  # from the host; batch 1 as a CUDA graph unless STACK_GRAPH= is set empty)
  real=""; [ -f .carry/real_layer0.spqr ] && real=.carry/real_layer0.spqr
  rc=0; SPQR_GPU_QUICK=1 SPQR_REAL_SPQR=$real timeout 150 ./build-gpu/tests/gpu/test_gpu > "$OUT/check.log" 2>&1 || rc=$?
  echo "test_gpu (quick subset, real groups) exit $rc"; grep -E "FAIL|passed|stacked:" "$OUT/check.log" | tail -15
  if [ -n "$real" ]; then
    ./build-gpu/gpu_linears "$real" > "$OUT/gpu_linears.log" 2>&1; echo "gpu_linears exit $?"
    grep -E "stacked|linears on" "$OUT/gpu_linears.log" | head -8
  fi
  echo "== bench_gpu --stacked =="
  ./build-gpu/bench/gpu/bench_gpu --stacked | tee "$OUT/bench_gpu_stacked.md"
  if [ -n "${STACK_GRAPH-1}" ]; then
    echo "== bench_gpu --stacked --graph --batch 1 =="
    ./build-gpu/bench/gpu/bench_gpu --stacked --graph --batch 1 | grep "^| [0-9]" | tee "$OUT/bench_gpu_stacked_graph.md"
  fi
  exit $rc
fi
if [ "$what" = tune ]; then
  # compile-time variants of the tensor-core kernel, built side by side; batch 1 (and TUNE_BATCH)
  # on three shapes (TUNE_SHAPES: others). VARIANTS: space-separated WARPS:MINBLOCKS pairs
  # (SPQR_MMA_WARPS_PER_SM, SPQR_MMA_MINBLOCKS).
  variants=${VARIANTS:-"32:3 16:3 64:3 32:2"}
  shapes=""; for sh in ${TUNE_SHAPES:-4096x4096 8192x8192 28672x8192}; do shapes="$shapes --shape $sh"; done
  for v in $variants; do
    IFS=: read -r st mb <<< "$v"
    ( cmake -S . -B build-tune-$st-$mb -DSPQR_MINIMAL=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DCMAKE_CUDA_FLAGS="-DSPQR_MMA_WARPS_PER_SM=$st -DSPQR_MMA_MINBLOCKS=$mb" \
        -DCMAKE_PREFIX_PATH=$DEPS/usr -DPKG_CONFIG_EXECUTABLE=/nonexistent > /dev/null 2>&1 &&
      cmake --build build-tune-$st-$mb -j4 --target bench_gpu > "$OUT/build-$st-$mb.log" 2>&1 ) &
  done
  wait
  for v in $variants; do
    IFS=: read -r st mb <<< "$v"
    echo "== warps per SM $st, min blocks $mb =="
    for b in 1 ${TUNE_BATCH:-}; do
      ./build-tune-$st-$mb/bench/gpu/bench_gpu --batch $b $shapes | grep "^| [0-9]"
    done
  done
  exit 0
fi
if [ "$what" = probe ]; then
  # the library's kernel against builds with other compile-time flags, batch 1 (and PROBE_BATCH).
  # PROBES: ';'-separated CUDA flag sets; default: the access-pattern ceilings of mma_kernel.cuh
  # (SPQR_MMA_PROBE 1 = loads only, 2 = no statistics decode: wrong results, timing only);
  # PROBE_SHAPES: space-separated ROWSxCOLS (default the four large ones)
  IFS=';' read -r -a probes <<< "${PROBES:--DSPQR_MMA_PROBE=1;-DSPQR_MMA_PROBE=2}"
  shapes=""; for sh in ${PROBE_SHAPES:-4096x4096 8192x8192 28672x8192 8192x28672}; do shapes="$shapes --shape $sh"; done
  for i in "${!probes[@]}"; do
    ( cmake -S . -B build-probe-$i -DSPQR_MINIMAL=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DCMAKE_CUDA_FLAGS="${probes[$i]}" \
        -DCMAKE_PREFIX_PATH=$DEPS/usr -DPKG_CONFIG_EXECUTABLE=/nonexistent > /dev/null 2>&1 &&
      cmake --build build-probe-$i -j8 --target bench_gpu ${PROBE_CHECK:+test_gpu} \
        > "$OUT/build-probe-$i.log" 2>&1 ) &
  done
  wait
  # PROBE_CHECK=1: each probe build's quick GPU tests first (a variant meant for the library)
  if [ -n "${PROBE_CHECK:-}" ]; then
    for i in lib "${!probes[@]}"; do
      if [ "$i" = lib ]; then dir=build-gpu; name="the library"; else dir=build-probe-$i; name="${probes[$i]}"; fi
      rc=0; SPQR_GPU_QUICK=1 timeout 120 ./$dir/tests/gpu/test_gpu > "$OUT/check-probe-$i.log" 2>&1 || rc=$?
      echo "== $name: test_gpu (quick subset) exit $rc: $(grep -cE "FAIL" "$OUT/check-probe-$i.log") FAIL lines; $(grep -E "passed" "$OUT/check-probe-$i.log" | tail -1)"
    done
  fi
  # PROBE_CONFIGS: bench_gpu --config values, one run each (default: its default configurations)
  # PROBE_B1= (set, empty): leave batch 1 out (only the PROBE_BATCH batches)
  # PROBE_ARGS: more bench_gpu arguments for every run
  # PROBE_ENVS: ';'-separated sets of environment assignments (e.g. "A=1 B=2;A=2"), each probe
  # build run once under each (for builds that read knobs from the environment)
  IFS=';' read -r -a envs <<< "${PROBE_ENVS:-}"
  [ ${#envs[@]} -eq 0 ] && envs=("")
  for i in lib "${!probes[@]}"; do
    if [ "$i" = lib ]; then dir=build-gpu; envl=("")
    else dir=build-probe-$i; envl=("${envs[@]}"); fi
    for e in "${envl[@]}"; do
      if [ "$i" = lib ]; then echo "== the library's kernel =="; else echo "== ${probes[$i]} $e =="; fi
      for b in ${PROBE_B1-1} ${PROBE_BATCH:-}; do
        for c in ${PROBE_CONFIGS:-default}; do
          cfg=""; [ "$c" != default ] && cfg="--config $c"
          env $e ./$dir/bench/gpu/bench_gpu --batch $b $cfg $shapes ${PROBE_ARGS:-} | grep "^| [0-9]"
          # PROBE_GRAPH=1: the same again as one CUDA graph
          if [ -n "${PROBE_GRAPH:-}" ]; then
            env $e ./$dir/bench/gpu/bench_gpu --graph --batch $b $cfg $shapes ${PROBE_ARGS:-} | grep "^| [0-9]" | sed 's/^|/| graph/'
          fi
        done
      done
    done
  done
  # FLOOR: byte counts (e.g. from bench_gpu --bytes); the time a pure read of each takes
  # (read_bw --floor), same timing method
  if [ -n "${FLOOR:-}" ]; then echo "== pure-read floor =="; ./build-gpu/bench/gpu/read_bw --floor $FLOOR; fi
  exit 0
fi
real=""
[ -f .carry/real_layer0.spqr ] && real=.carry/real_layer0.spqr
if [ "$what" = profile ]; then
  # batch 1, SHAPE (28672x8192), CONFIG (0 = w3 1% outliers): one launch of KERNEL after SKIP
  # warm-up launches, ncu at the card's own clocks; PROFILE_FLAGS: also a build with these CUDA
  # flags, profiled the same way (ncu-1.txt); NCU_TAG: a suffix for the report files
  dirs=(build-gpu)
  if [ -n "${PROFILE_FLAGS:-}" ]; then
    cmake -S . -B build-prof -DSPQR_MINIMAL=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DCMAKE_CUDA_FLAGS="$PROFILE_FLAGS" -DCMAKE_PREFIX_PATH=$DEPS/usr -DPKG_CONFIG_EXECUTABLE=/nonexistent > /dev/null 2>&1
    cmake --build build-prof -j16 --target bench_gpu > "$OUT/build-prof.log" 2>&1
    dirs+=(build-prof)
  fi
  for i in "${!dirs[@]}"; do
    echo "== ${dirs[$i]} =="
    ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \
      --section LaunchStats --section InstructionStats --section SchedulerStats --section ComputeWorkloadAnalysis \
      --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,regex:sm__inst_executed_pipe_.*\.avg\.pct_of_peak_sustained_active,regex:sm__pipe_.*_cycles_active\.avg\.pct_of_peak_sustained_active" \
      --kernel-name regex:${KERNEL:-mma_kernel} --launch-skip ${SKIP:-10} --launch-count 1 \
      ./${dirs[$i]}/bench/gpu/bench_gpu --batch 1 --config ${CONFIG:-0} --shape ${SHAPE:-28672x8192} > "$OUT/ncu-$i${NCU_TAG:-}.txt" 2>&1 || true
    grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Registers|Stall|Warp Cycles|Theoretical Occupancy|Block Limit|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Issued|Executed Ipc|stalled|Eligible|No Eligible|Active Warps|Shared Memory" "$OUT/ncu-$i${NCU_TAG:-}.txt" | sed -n 1,40p
    grep -E "issue_stalled" "$OUT/ncu-$i${NCU_TAG:-}.txt" | awk '$NF+0 > 0.05' | sed -E 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' 
    grep -E "pipe_" "$OUT/ncu-$i${NCU_TAG:-}.txt" | awk '$NF+0 > 2' 
  done
  exit 0
fi
if [ "$what" != bench ]; then
  echo "== test_cpu_matmul (this machine's CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)) =="
  grep -o -w 'avx512vbmi\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
  ./build-gpu/test_cpu_matmul > "$OUT/test_cpu_matmul.log" 2>&1; echo "test_cpu_matmul exit $?"
  grep -E "FAIL|SKIP|passed" "$OUT/test_cpu_matmul.log" | tail -8
  echo "== test_gpu =="
  SPQR_REAL_SPQR=$real ./build-gpu/tests/gpu/test_gpu > "$OUT/test_gpu.log" 2>&1 || true
  grep -E "FAIL|passed" "$OUT/test_gpu.log" | tail -25
  if [ -n "$real" ]; then
    echo "== examples/gpu_linears $real =="
    rc=0; ./build-gpu/gpu_linears "$real" > "$OUT/gpu_linears.log" 2>&1 || rc=$?
    echo "gpu_linears exit $rc"
    tail -4 "$OUT/gpu_linears.log"
  fi
  if [ -z "${SKIP_SANITIZER:-}" ]; then
  echo "== compute-sanitizer (memcheck, quick subset) =="
  SPQR_GPU_QUICK=1 SPQR_REAL_SPQR=$real timeout 180 compute-sanitizer --tool memcheck --error-exitcode 9 \
    ./build-gpu/tests/gpu/test_gpu > "$OUT/sanitizer.log" 2>&1; echo "compute-sanitizer exit $?"
  grep -E "ERROR SUMMARY|passed" "$OUT/sanitizer.log" | tail -3
  fi
fi
if [ "$what" != test ]; then
  echo "== bench_gpu =="
  ./build-gpu/bench/gpu/bench_gpu | tee "$OUT/bench_gpu.md"
  # the same with the 50 calls as one CUDA graph (no host launch overhead), and the pure-read
  # floor of each configuration's bytes (read_bw --floor, five launch methods) at batch 1 of
  # 4096², 8192² and 28672x8192
  # β2 = 8 (w3 1 %: config 4 with β1 = 16, config 5 with β1 = 8), batch 1, 4 and 16
  echo "== bench_gpu --config 4, --config 5 =="
  ./build-gpu/bench/gpu/bench_gpu --config 4 | tee "$OUT/bench_gpu_beta2_8.md"
  ./build-gpu/bench/gpu/bench_gpu --config 5 | grep "^| [0-9]" | tee -a "$OUT/bench_gpu_beta2_8.md"
  echo "== bench_gpu --graph =="
  ./build-gpu/bench/gpu/bench_gpu --graph | tee "$OUT/bench_gpu_graph.md"
  echo "== pure-read floor =="
  floor=$(./build-gpu/bench/gpu/bench_gpu --bytes --shape 4096x4096 --shape 8192x8192 --shape 28672x8192 | awk '/^BYTES/ {print $2}')
  ./build-gpu/bench/gpu/read_bw --floor ${FLOOR:-$floor} | tee "$OUT/read_floor.md"
fi
