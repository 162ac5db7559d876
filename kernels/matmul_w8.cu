// matmul_w8.cu — the w = 8 matmul kernels (matmul_wb.cuh).
#define SPQR_WB 8
#include "matmul_wb.cuh"
