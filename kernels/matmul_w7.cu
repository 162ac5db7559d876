// matmul_w7.cu — the w = 7 matmul kernels (matmul_wb.cuh).
#define SPQR_WB 7
#include "matmul_wb.cuh"
