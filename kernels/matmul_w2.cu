// matmul_w2.cu — the w = 2 matmul kernels (matmul_wb.cuh).
#define SPQR_WB 2
#include "matmul_wb.cuh"
