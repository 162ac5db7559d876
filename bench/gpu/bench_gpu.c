/* bench_gpu.c — the GPU benchmark as a program of its own, for bench/gpu/run_device.sh, whose
 * minimal build (SPQR_MINIMAL: no BLAS, no JSON) has no spqr command line: the same code and
 * options as `spqr bench --gpu` (tools/cmd_bench_gpu.c, which documents them and the method). */
#include "cli.h"

int main(int argc, char **argv) {
    return cmd_bench_gpu(argc, argv);
}
