// mma_outliers.cuh — the tensor-core kernel's outliers (mma_kernel.cuh): the CSR walks pipelined
// with the macro tiles (OS = 1, 2, 4), the outlier rounds (OS = 8, 9, 10: one mma per round) and
// the batch 9-16 pass of its own (outlier_rows_kernel).
#pragma once
#include "mma_decode.cuh"

namespace spqr_cu {
namespace {

// Outliers, pipelined with the macro tiles: lane (g, t) adds CSR entries of its rows g and g+8;
// the entries of a row are dealt to the strip's kw·ksplit warps. For nb <= OS (OS = 2, or 4 in
// the kernels launched for batch 3-4 of tensors with outliers: only lanes t < OS/2 hold those
// vectors' C fragment) the four lanes of a row split its entries further and sum them in o[][]
// (folded into the lanes holding the vectors at the end); otherwise each lane takes all the
// entries of its share for its own C-fragment vectors 2t, 2t+1 (+8) and adds straight into acc.
// Each step consumes the entry loaded by the previous step (its x lookup hits L1/L2) and loads
// the next. (OS = 4 has its own kernels: its 8 sums cost registers that batch 1 should not pay,
// bench/NOTES.md v6g/v6n.)
__device__ __forceinline__ float2 pair_to_f2(const __half *v) {
    return __half22float2(*reinterpret_cast<const __half2 *>(v));
}
__device__ __forceinline__ float2 pair_to_f2(const __nv_bfloat16 *v) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(v));
}

// OS = 0: the kernels launched without fused outliers (none in the tensor, or another pass adds
// them): no state and no per-tile checks (12 registers and ~10 instructions per tile).
// OS = 1 (batch 1, SPQR_MMA_OS1; bench/NOTES.md v6r): each lane walks one row, g + 8·(t / 2), its
// entries split between lanes t and t ^ 1: half the state (5 registers instead of 12) and half the
// work per step, for twice the steps; with late x and lane pointers the kernel fits 64 registers.
template <int OS> struct OutlierState {
    static constexpr int kRows = OS == 1 ? 1 : 2; // rows a lane walks
    uint32_t k[kRows], end[kRows], col[kRows];
    float d[kRows];
    float o[kRows][OS > 0 ? OS : 1]; // nb <= OS: this lane's sums per row, vectors 0 .. OS − 1
    __device__ bool entries_left() const {
        bool left = false;
#pragma unroll
        for (int r = 0; r < kRows; r++) left |= OS > 0 && k[r] < end[r];
        return left;
    }
};

// OS = 8 (batch 1 of tensors with rounds; SPQR_MMA_ROUNDS, bench/NOTES.md v6w): the outliers
// as rounds, each one more mma.m16n8k16 into acc (OS = 9, batch 2-8: eight, outlier_round_n; 9-16:
// 16, outlier_round_n2). Batch 1 leaves the mma's n dimension idle: every column n of B is the same
// x, so every column of C holds the same sums, and the kernel's result for row r may be read from
// column n = r mod 8 instead of 0. A round uses that: its B column n holds x at the columns of row
// pair (n, n + 8)'s outliers, so C[r][r mod 8] gains Σ_k A'[r][k]·x[col_k] for the 16 k-slots of
// row r's pair, A'[r][k] the fp16 correction of the pair's k-th outlier where it is row r's, else 0
// (the other columns of C gain cross terms nobody reads). Lane (g, t) holds all of pair g's slots k
// = 2t, 2t + 1, 2t + 8, 2t + 9: A' rows g and g + 8 at those k and B column g at those k, so a
// round is one 16-byte load per lane (d.x, d.y: the four corrections as fp16; d.z, d.w: their
// columns, bit 15 set where the outlier is row g + 8's), four 2-byte x lookups and one mma for up
// to 128 outliers of 16 rows. make_rounds (spqr_kernels.cu) fills a strip's rounds; its rounds are
// dealt to the strip's kw·ksplit warps.
// SPQR_MMA_ROUND_AT (bench/NOTES.md v6z): 2 = each warp takes its rounds after its tile loop
// (outlier_rounds_all), so the loop is the OS = 0 kernels' (batch 1 w3 1 % 28672x8192 52.4 →
// 51.5-52.0 µs, batch 2-4 4-9 % faster); 0 = one round per tile step, its slots loaded one step
// ahead (v6w; a measurement build).
#ifndef SPQR_MMA_ROUND_AT
#define SPQR_MMA_ROUND_AT 2
#endif
template <> struct OutlierState<8> {
    static constexpr int kRows = 2; // (for the kernel's lane arithmetic; no rows walked)
    uint32_t k, end;                // the warp's next round, the strip's end (rptr)
    uint4 d;                        // round k's slots of this lane, loaded one step ahead
    uint32_t sched; // OS = 10: (tile steps between rounds − 1) << 16 | steps to the next round
    __device__ bool entries_left() const { return k < end; }
};
// OS = 9: the same for batch 2-16 (outlier_round_n, _n2), its own kernels so that batch 1's stay
// lean.
template <> struct OutlierState<9> : OutlierState<8> {};
// OS = 10 (batch 9-16, NH = 2, s-bit statistics with β1 >= 16 and β2 >= 16, SK = 0; bench/NOTES.md
// v7e): the rounds of outlier_round_n2 taken inside the tile loop, one every ⌊tiles / rounds⌋ tile
// steps, instead of after it. Where cols > 8192 xt (16 vectors) is past L1, and a round's 32
// gathers per lane wait on L2; inside the loop the warp's record loads are in flight meanwhile.
// Same call, H100, w3 1 %, µs CSR rows after the tiles / OS = 10: batch 16 8192x28672 99.0 /
// 93.9, 4096x11008 24.7 / 23.8; batch 12 94.5 / 89.7, 23.8 / 22.8. Not for cols <= 8192: there
// the rounds after the loop (OS = 9) are faster (28672x8192 84.7 / 98.3, 11008x4096 21.5 / 27.0),
// in part because OS = 10 needs 96 registers (two blocks per SM) where OS = 9 fits 80 (three).
template <> struct OutlierState<10> : OutlierState<8> {};

// Whether the lanes of a row split its entries (nb <= OS; the OS = 1 kernels run batch 1 only).
template <int OS> __device__ __forceinline__ bool outl_spread(int nb) {
    return OS == 1 || (OS < 8 && nb <= OS);
}

// 0xFFFF in each 16-bit half of v whose top bit (15 or 31) is set: PRMT replicating the sign
// bits of bytes 1 and 3.
__device__ __forceinline__ uint32_t half_sign_mask(uint32_t v) {
    uint32_t m;
    asm("prmt.b32 %0, %1, 0, 0xBB99;" : "=r"(m) : "r"(v));
    return m;
}

// A' of a lane's round slots: registers (row g, k = 2t, 2t + 1), (row g + 8, same k), (row g,
// k + 8), (row g + 8, k + 8), each slot's correction in its row's register (bit 15 of its column
// half: row g + 8), converted to the activation type.
template <typename Act> __device__ __forceinline__ void round_a(const uint4 &d, uint32_t (&a)[4]) {
    const uint32_t mz = half_sign_mask(d.z), mw = half_sign_mask(d.w); // the slots of row g + 8
    a[0] = d.x & ~mz, a[1] = d.x & mz, a[2] = d.y & ~mw, a[3] = d.y & mw;
    if constexpr (!std::is_same<Act, __half>::value) {
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const __nv_bfloat162 wb = __float22bfloat162_rn(__half22float2(bits_h2(a[r])));
            a[r] = *reinterpret_cast<const uint32_t *>(&wb);
        }
    }
}
// B' registers of four slots' columns (z, w: two 15-bit columns each): x there, paired; column c's
// value at xs[CS·c] (CS = 1: a row of xh; 16: the paired xt, outlier_round_n at batch 2-8).
// XS: xs in shared memory (mma_kernel.cuh), generic loads.
template <uint32_t CS = 1, bool XS = false>
__device__ __forceinline__ uint2 round_b(const uint16_t *xs, uint32_t z, uint32_t w) {
    uint32_t x0, x1, x2, x3;
    if constexpr (XS) {
        x0 = xs[CS * (z & 0x7fffu)], x1 = xs[CS * ((z >> 16) & 0x7fffu)];
        x2 = xs[CS * (w & 0x7fffu)], x3 = xs[CS * ((w >> 16) & 0x7fffu)];
    } else {
        x0 = __ldg(xs + CS * (z & 0x7fffu)), x1 = __ldg(xs + CS * ((z >> 16) & 0x7fffu));
        x2 = __ldg(xs + CS * (w & 0x7fffu)), x3 = __ldg(xs + CS * ((w >> 16) & 0x7fffu));
    }
    return make_uint2(__byte_perm(x0, x1, 0x5410), __byte_perm(x2, x3, 0x5410));
}

// One outlier round (OS = 8), batch 1: A' and B' of the lane's four slots, then the mma into acc.
template <typename Act, bool XS = false>
__device__ __forceinline__ void outlier_round(const Act *__restrict__ xh, const uint4 &d,
                                              float (&acc)[4]) {
    uint32_t a[4];
    round_a<Act>(d, a);
    const uint2 b = round_b<1, XS>(reinterpret_cast<const uint16_t *>(xh), d.z, d.w); // vector 0
    mma_16816(acc, a, b.x, b.y, Act());
}

// One outlier round, batch 2-8: no idle n column, so each row pair g' of the round has an mma of
// its own, into the true vector columns. Lanes (g', t) hold its slots; every lane (g, t) takes
// their columns (two shuffles), gathers vector g's x there (B column g; vectors past nb repeat the
// last, their columns unread) and gives A' rows g, g + 8 only for g = g'. 8 mmas per round.
// SPQR_MMA_ROUND_UNROLL: row pairs per unrolled step (8: the OS = 9 kernels spill; 1, 2 and 4
// measured alike, v6w)
#ifndef SPQR_MMA_ROUND_UNROLL
#define SPQR_MMA_ROUND_UNROLL 4
#endif
constexpr int kRoundUnroll = SPQR_MMA_ROUND_UNROLL;
// With xt (batch 8, and past L1 from batch 2: mma_layout.cuh mma_rounds_xt): vector g of column c
// from the paired xt at 16c + 2g, so that the eight vectors of a slot's column are one 32-byte
// sector, as at batch 9-16, instead of eight scattered 2-byte reads (bench/NOTES.md v7e).
template <typename Act>
__device__ __forceinline__ void outlier_round_n(const Act *__restrict__ xh, const Act *xt,
                                                uint32_t xstride, int nb, const uint4 &d,
                                                float (&acc)[4]) {
    const uint32_t lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    uint32_t own[4];
    round_a<Act>(d, own);
    const uint16_t *xs =
        xt ? reinterpret_cast<const uint16_t *>(xt) + 2 * g
           : reinterpret_cast<const uint16_t *>(xh + (uint64_t)min((int)g, nb - 1) * xstride);
#pragma unroll kRoundUnroll
    for (uint32_t gp = 0; gp < 8; gp++) {
        const uint32_t z = __shfl_sync(0xffffffffu, d.z, 4 * gp + t);
        const uint32_t w = __shfl_sync(0xffffffffu, d.w, 4 * gp + t);
        const uint2 b = xt ? round_b<16>(xs, z, w) : round_b(xs, z, w);
        const uint32_t a[4] = {g == gp ? own[0] : 0u, g == gp ? own[1] : 0u, g == gp ? own[2] : 0u,
                               g == gp ? own[3] : 0u};
        mma_16816(acc, a, b.x, b.y, Act());
    }
}

// One outlier round, batch 9-16 (the OS = 9 kernels with NH = 2): as outlier_round_n, each row
// pair g' of the round an mma per half of the vectors (16 mmas), B column g of half n vector 8n +
// g. Its x comes from xt, the 16 vectors of a column in one 32-byte sector, which the eight lanes
// of a slot's column share (xh would take a sector per vector). SPQR_MMA_XT_PAIRED 1: xt paired
// (xt[16c + 2g + n] = x[8n + g][c], prep_xh_kernel), a lane's two vectors one 4-byte load; 0:
// xt[16c + b] = x[b][c], two 2-byte loads (bench/NOTES.md v7b).
#ifndef SPQR_MMA_XT_PAIRED
#define SPQR_MMA_XT_PAIRED 1
#endif
template <typename Act>
__device__ __forceinline__ void outlier_round_n2(const Act *__restrict__ xt, const uint4 &d,
                                                 float (&acc)[2][4]) {
    const uint32_t lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    uint32_t own[4];
    round_a<Act>(d, own);
#pragma unroll kRoundUnroll
    for (uint32_t gp = 0; gp < 8; gp++) {
        const uint32_t z = __shfl_sync(0xffffffffu, d.z, 4 * gp + t);
        const uint32_t w = __shfl_sync(0xffffffffu, d.w, 4 * gp + t);
        const uint32_t c[4] = {z & 0x7fffu, (z >> 16) & 0x7fffu, w & 0x7fffu, (w >> 16) & 0x7fffu};
        uint32_t b[2][2]; // B' of half n: x of vector 8n + g at the four slots' columns, paired
        if constexpr (SPQR_MMA_XT_PAIRED) {
            const uint32_t *xs = reinterpret_cast<const uint32_t *>(xt) + g; // (vector g, 8 + g)
            uint32_t xv[4];
#pragma unroll
            for (int j = 0; j < 4; j++) xv[j] = __ldg(xs + 8 * c[j]);
#pragma unroll
            for (int j = 0; j < 2; j++) {
                b[0][j] = __byte_perm(xv[2 * j], xv[2 * j + 1], 0x5410);
                b[1][j] = __byte_perm(xv[2 * j], xv[2 * j + 1], 0x7632);
            }
        } else {
            const uint16_t *xs = reinterpret_cast<const uint16_t *>(xt) + g;
            uint32_t xv[2][4];
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int j = 0; j < 4; j++) xv[n][j] = __ldg(xs + 16 * c[j] + 8 * n);
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int j = 0; j < 2; j++)
                    b[n][j] = __byte_perm(xv[n][2 * j], xv[n][2 * j + 1], 0x5410);
        }
        const uint32_t a[4] = {g == gp ? own[0] : 0u, g == gp ? own[1] : 0u, g == gp ? own[2] : 0u,
                               g == gp ? own[3] : 0u};
#pragma unroll
        for (int n = 0; n < 2; n++) mma_16816(acc[n], a, b[n][0], b[n][1], Act());
    }
}

template <int NH, int OS, typename Act, bool XS = false>
__device__ __forceinline__ void outlier_step(const Params &p, const Act *__restrict__ xh,
                                             const Act *__restrict__ xt, uint32_t xstride, int nb,
                                             uint32_t t, uint32_t step, OutlierState<OS> &o,
                                             float (&acc)[NH][4]) {
    if constexpr (OS >= 8) {
        if (o.k < o.end) {            // (the same in every lane of the warp)
            if constexpr (OS == 10) { // a round every (sched >> 16) + 1 steps
                if (o.sched & 0xffffu) {
                    o.sched--;
                    return;
                }
                o.sched |= o.sched >> 16;
            }
            if constexpr (OS == 8)
                outlier_round<Act, XS>(xh, o.d, acc[0]);
            else if constexpr (NH == 2)
                outlier_round_n2<Act>(xt, o.d, acc);
            else
                outlier_round_n<Act>(xh, xt, xstride, nb, o.d, acc[0]);
            o.k += step;
            if (o.k < o.end) o.d = __ldg(p.rounds + (uint64_t)o.k * 32 + (threadIdx.x & 31));
        }
    } else if constexpr (OS > 0) {
#pragma unroll
        for (int r = 0; r < OutlierState<OS>::kRows; r++) {
            if (o.k[r] >= o.end[r]) continue;
            if (outl_spread<OS>(nb)) {
#pragma unroll
                for (int h = 0; h < OS; h++)
                    if (OS == 1 || h < nb) // (OS = 1: batch 1)
                        o.o[r][h] = fmaf(o.d[r], to_f<Act>(xh[(uint64_t)h * xstride + o.col[r]]),
                                         o.o[r][h]);
            } else {
                if constexpr (NH == 2) {
                    // vectors 8n + 2t, +1 of column col: one 4-byte load from xt (zero past nb)
#pragma unroll
                    for (int n = 0; n < NH; n++) {
                        const float2 xv = pair_to_f2(xt + 16ull * o.col[r] + 8 * n + 2 * t);
                        acc[n][2 * r] = fmaf(o.d[r], xv.x, acc[n][2 * r]);
                        acc[n][2 * r + 1] = fmaf(o.d[r], xv.y, acc[n][2 * r + 1]);
                    }
                } else {
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int b = 2 * (int)t + h;
                        if (b < nb)
                            acc[0][2 * r + h] =
                                fmaf(o.d[r], to_f<Act>(xh[(uint64_t)b * xstride + o.col[r]]),
                                     acc[0][2 * r + h]);
                    }
                }
            }
            o.k[r] += step;
            if (o.k[r] < o.end[r])
                o.col[r] = outlier_col(p, o.k[r]), o.d[r] = __ldg(p.delta + o.k[r]);
        }
    }
}

// All of a warp's rounds after its tile loop (SPQR_MMA_ROUND_AT 2). Batch 1: SPQR_MMA_ROUND_DEPTH
// rounds per step, their slots loaded one step ahead and all their gathers issued before the first
// mma (a missing round is all zero: zero corrections at column 0; depth 1 / 2 / 4 measured 52.0 /
// 51.5 / 51.0 µs at 28672x8192, alike elsewhere); batch 2-16 one per step.
#ifndef SPQR_MMA_ROUND_DEPTH
#define SPQR_MMA_ROUND_DEPTH 2
#endif
constexpr int kRoundDepth = SPQR_MMA_ROUND_DEPTH;
template <int NH, int OS, typename Act, bool XS = false>
__device__ __forceinline__ void outlier_rounds_all(const Params &p, const Act *__restrict__ xh,
                                                   const Act *__restrict__ xt, uint32_t xstride,
                                                   int nb, uint32_t step, OutlierState<OS> &o,
                                                   float (&acc)[NH][4]) {
    const uint32_t lane = threadIdx.x & 31;
    if constexpr (OS == 8) {
        constexpr int D = kRoundDepth;
        const uint16_t *xs = reinterpret_cast<const uint16_t *>(xh);
        uint4 d[D];
#pragma unroll
        for (int j = 0; j < D; j++) {
            const uint32_t k = o.k + j * step;
            d[j] = k < o.end ? __ldg(p.rounds + (uint64_t)k * 32 + lane) : make_uint4(0, 0, 0, 0);
        }
        while (o.k < o.end) { // (the same in every lane of the warp)
            uint32_t a[D][4];
            uint2 b[D];
#pragma unroll
            for (int j = 0; j < D; j++)
                round_a<Act>(d[j], a[j]), b[j] = round_b<1, XS>(xs, d[j].z, d[j].w);
            o.k += D * step;
#pragma unroll
            for (int j = 0; j < D; j++) {
                const uint32_t k = o.k + j * step;
                d[j] =
                    k < o.end ? __ldg(p.rounds + (uint64_t)k * 32 + lane) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int j = 0; j < D; j++) mma_16816(acc[0], a[j], b[j].x, b[j].y, Act());
        }
    } else {
        if (o.k < o.end) o.d = __ldg(p.rounds + (uint64_t)o.k * 32 + lane);
        while (o.k < o.end) {
            const uint4 d = o.d;
            o.k += step;
            if (o.k < o.end) o.d = __ldg(p.rounds + (uint64_t)o.k * 32 + lane);
            if constexpr (NH == 2)
                outlier_round_n2<Act>(xt, d, acc);
            else
                outlier_round_n<Act>(xh, xt, xstride, nb, d, acc[0]);
        }
    }
}

// Row row's outliers times the 16 vectors of xt, summed over the warp: the row's entries dealt
// to the 32 lanes, each entry multiplied into all 16 vectors at once (two 16-byte loads of xt),
// then a reduce-scatter (8 + 4 + 2 + 1 + 1 shuffles) that leaves vector lane / 2's sum in the
// even lanes (and in the odd lanes beside them). Every lane of the warp must call it.
template <typename Act>
__device__ __forceinline__ float outlier_row_sum(const Params &p, const Act *__restrict__ xt,
                                                 uint32_t row, uint32_t lane) {
    float o[16];
#pragma unroll
    for (int i = 0; i < 16; i++) o[i] = 0.f;
    const uint32_t k1 = __ldg(p.rowptr + row + 1);
    for (uint32_t k = __ldg(p.rowptr + row) + lane; k < k1; k += 32) {
        const uint32_t c = outlier_col(p, k);
        const float d = __ldg(p.delta + k);
        const uint4 *xv = reinterpret_cast<const uint4 *>(xt + 16ull * c);
        const uint4 v[2] = {__ldg(xv), __ldg(xv + 1)};
        const Act *a = reinterpret_cast<const Act *>(v);
#pragma unroll
        for (int i = 0; i < 16; i += 2) {
            const float2 xf = pair_to_f2(a + i);
            o[i] = fmaf(d, xf.x, o[i]), o[i + 1] = fmaf(d, xf.y, o[i + 1]);
        }
    }
    // reduce-scatter: at each step a lane keeps the half of its values its lane bit selects and
    // adds the partner's copy of that half (vector index bits 3..0 = lane bits 4..1)
#pragma unroll
    for (int w = 8, bit = 16; w >= 1; w >>= 1, bit >>= 1) {
        const bool upper = lane & bit;
#pragma unroll
        for (int i = 0; i < w; i++) {
            const float send = upper ? o[i] : o[i + w], keep = upper ? o[i + w] : o[i];
            o[i] = keep + __shfl_xor_sync(0xffffffffu, send, bit);
        }
    }
    o[0] += __shfl_xor_sync(0xffffffffu, o[0], 1);
    return o[0];
}

// Batch 9-16 outliers in their own pass (SPQR_MMA_OUTL_ROWS; bench/NOTES.md v6p): one warp per
// row (outlier_row_sum): o32[b][row] = Σ_k delta_k · x[b][col_k] (fp32). Inside the tensor-core
// kernel each lane of a row walked all of its share of the row's entries for its own four vectors,
// one entry per tile behind a dependent load: w3 1 % batch 16 took 1.6-1.8x the time of the same
// tensor without outliers. The tensor-core kernel then adds o32 in its epilogue.
template <typename Act>
__global__ void __launch_bounds__(256)
    outlier_rows_kernel(Params p, const Act *__restrict__ xt, int nb, float *__restrict__ o32) {
    pdl_trigger(); // the matmul may start streaming
    pdl_wait();    // xt comes from prep_xh_kernel
    const uint32_t lane = threadIdx.x & 31;
    const uint32_t row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= p.rows) return;
    const float v = outlier_row_sum<Act>(p, xt, row, lane);
    const int b = (int)(lane >> 1);
    if (!(lane & 1) && b < nb) o32[(uint64_t)b * p.rows + row] = v;
}

// The same sums inside the tensor-core kernel, after a warp's tile loop (SPQR_MMA_OUTL_TAIL,
// batch 9-16): the strip's rows dealt to its kw·ksplit warps (row rr to warp rr mod nw), each
// row's sums added into the warp's shared partial sums red_w[rr][b], which the kernel's epilogue
// adds up. The separate pass ran before the matmul, which waited for it (27.7 µs of 107.6 at
// batch 16 w3 1 % 28672x8192, bench/NOTES.md v6z); here its loads overlap other warps' tiles.
// SPQR_MMA_TAIL_PF 1: before its tiles, a warp pulls its share of the strip's CSR outliers
// (column indices and corrections) towards L2, one 128-byte line per lane of each array, so the
// tail's first loads do not wait on DRAM.
#ifndef SPQR_MMA_TAIL_PF
#define SPQR_MMA_TAIL_PF 1
#endif
__device__ __forceinline__ void outlier_rows_prefetch(const Params &p, uint32_t S, uint32_t first,
                                                      uint32_t nw) {
    const uint32_t lane = threadIdx.x & 31, line = lane * nw + first;
    const uint32_t e0 = __ldg(p.rowptr + 16 * S), e1 = __ldg(p.rowptr + min(16 * S + 16, p.rows));
    const uint32_t per_line = p.wide ? 32 : 64; // column indices per 128-byte line
    if (e0 + line * per_line < e1)
        asm volatile("prefetch.global.L2 [%0];\n" ::"l"(
            (const char *)p.colidx + (uint64_t)(e0 + line * per_line) * (p.wide ? 4 : 2)));
    if (e0 + line * 32 < e1)
        asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p.delta + e0 + line * 32));
}
template <typename Act, int NV>
__device__ __forceinline__ void outlier_rows_tail(const Params &p, const Act *__restrict__ xt,
                                                  int nb, uint32_t S, uint32_t first, uint32_t nw,
                                                  float (*red_w)[NV]) {
    const uint32_t lane = threadIdx.x & 31;
    const int b = (int)(lane >> 1);
    for (uint32_t rr = first; rr < 16 && 16 * S + rr < p.rows; rr += nw) {
        const float v = outlier_row_sum<Act>(p, xt, 16 * S + rr, lane);
        if (!(lane & 1) && b < nb) red_w[rr][b] += v;
    }
}

} // namespace
} // namespace spqr_cu
