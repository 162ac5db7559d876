// matmul_w6.cu — the w = 6 matmul kernels (matmul_wb.cuh).
#define SPQR_WB 6
#include "matmul_wb.cuh"
