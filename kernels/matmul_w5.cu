// matmul_w5.cu — the w = 5 matmul kernels (matmul_wb.cuh).
#define SPQR_WB 5
#include "matmul_wb.cuh"
