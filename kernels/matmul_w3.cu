// matmul_w3.cu — the w = 3 matmul kernels (matmul_wb.cuh).
#define SPQR_WB 3
#include "matmul_wb.cuh"
