// matmul_w4.cu — the w = 4 matmul kernels (matmul_wb.cuh).
#define SPQR_WB 4
#include "matmul_wb.cuh"
