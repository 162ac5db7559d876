// mma_kernel.cuh — v6, the tensor-core kernel for batch 1..16 (layout: mma_layout.cuh). See
// bench/NOTES.md "v6".
//
// Why: v5 (one FFMA per weight and vector, weights decoded to fp32) issues ~8 instructions per
// weight and is instruction-bound at 35-51 % of copy bandwidth. Here weights are decoded to fp16
// pairs and multiplied by mma.sync.m16n8k16 (fp32 accumulation): per pair of weights one SHF + one
// LOP3 (codes → 1024 + q as fp16, exactly), one HSUB2 (→ q − round(zero), exact), one HFMA2
// (→ ŵ, rounded once to fp16); w = 2 and 3 skip the HSUB2 (code_pair); the multiply itself is
// 1/8 instruction per weight per lane.
#pragma once
#include "mma_layout.cuh"

namespace spqr_cu {
namespace {

__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1, __half) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1, __nv_bfloat16) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// SPQR_MMA_PROBE: measurement builds (below, before mma_compute)
#ifndef SPQR_MMA_PROBE
#define SPQR_MMA_PROBE 0
#endif
#ifndef SPQR_MMA_NIBBLE // 0: w = 4 decodes every pair at bits 0..3 (a measurement build)
#define SPQR_MMA_NIBBLE 1
#endif
// The fp16 offset of a pair's codes: 1024, except w = 4 row g + 8 (odd pairs): 64 (below).
template <int WB> constexpr float pair_offset(int row_half) {
    return (WB == 4 && SPQR_MMA_NIBBLE && row_half == 1) ? 64.f : 1024.f;
}
// Pair P of a lane's WB code words as the fp16 pair (off + qA, off + qB), off = pair_offset:
// magic.x = (1024, 1024), magic.y = (64, 64), in registers (so (v & M) | magic is one LOP3).
// A w-bit field at mantissa bits b.. under the exponent of 2^(10 − b) reads as 2^(10 − b) + q:
// w = 4 takes b = 0 (offset 1024) for even pairs (row g) and b = 4 (offset 64) for odd pairs
// (row g + 8), so a word's four pairs (bits 0, 4, 8, 12) cost one shift (by 8) instead of
// three; the ALU pipe is the kernel's busiest (bench/NOTES.md v6o).
//
// w = 2, 3 (direct_decode, mma_layout.cuh direct_width): no offset. Each pair is shifted to
// mantissa bits 10 − w .. 9 of both halves with the exponent bits left 0: the fp16 subnormal
// q·2^-(14 + w), exact. Where the pair lies is code_word / code_bit (mma_layout.cuh): w = 3 puts
// pair 5i + k of word i at bit 1 + 3k, so one shift each but pair 5i + 2, and pair 15 gathers bit
// 0 of the three words; w = 2: pair 8i + k at bit 2k of word i. mma_tile then needs one HFMA2
// per pair instead of HSUB2 + HFMA2.
template <int WB> constexpr bool direct_decode() {
    return direct_width(WB);
}
template <int WB, int P>
__device__ __forceinline__ uint32_t code_pair(const uint32_t (&w)[WB], uint2 magic) {
    if constexpr (direct_decode<WB>()) {
        constexpr int top = 10 - WB; // the field's lowest mantissa bit
        constexpr int i = code_word(WB, P, 0), pos = code_bit(WB, P, 0);
        if constexpr (code_word(WB, P, WB - 1) == i && code_bit(WB, P, WB - 1) == pos + WB - 1) {
            constexpr uint32_t M = (((1u << WB) - 1u) << top) * 0x10001u; // a whole field
            if constexpr (pos < top)
                return (w[i] << (top - pos)) & M;
            else
                return (w[i] >> (pos - top)) & M;
        } else { // the field's bits apart (w = 3, pair 15): each moved to its place
            uint32_t v = 0;
#pragma unroll
            for (int b = 0; b < WB; b++) {
                const int sh = top + b - (int)code_bit(WB, P, b);
                const uint32_t u = w[code_word(WB, P, b)];
                v |= (sh >= 0 ? u << sh : u >> -sh) & (0x10001u << (top + b));
            }
            return v;
        }
    } else if constexpr (WB == 4 && SPQR_MMA_NIBBLE) {
        constexpr int i = P >> 2, r = P & 3;
        const uint32_t v = r >= 2 ? (w[i] >> 8) : w[i];
        return (r & 1) ? ((v & 0x00F000F0u) | magic.y) : ((v & 0x000F000Fu) | magic.x);
    } else {
        constexpr int o = P * WB, i = o >> 4, sh = o & 15;
        constexpr uint32_t M2 = ((1u << WB) - 1u) * 0x10001u;
        uint32_t v;
        if constexpr (sh + WB <= 16 || SPQR_MMA_PROBE == 7) { // (7: timing probe, no straddles)
            v = sh ? (w[i] >> sh) : w[i];
        } else { // straddles: low part from word i, the rest from word i + 1
            constexpr uint32_t SEL = (0xFFFFu >> sh) * 0x10001u;
            v = ((w[i] >> sh) & SEL) | ((w[i + 1] << (16 - sh)) & ~SEL);
        }
        return (v & M2) | magic.x;
    }
}

// xh[b][c] = x[b][perm[c]] for b < nb, c < stride = 64·mtiles (zeros past cols).
template <typename Act>
__global__ void prep_xh_kernel(Params p, const Act *__restrict__ x, int nb, Act *__restrict__ xh,
                               uint32_t stride, Act *__restrict__ xt) {
#if __CUDA_ARCH__ >= 900
    // let the matmul kernel launch now (programmatic dependent launch): it streams its first
    // weights while this runs and waits (griddepcontrol.wait) before it reads xh
    asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif
    const uint64_t total = (uint64_t)nb * stride;
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < total;
         i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t b = (uint32_t)(i / stride), c = (uint32_t)(i % stride);
        Act v = from_f<Act>(0.f);
        if (c < p.cols) v = x[(uint64_t)b * p.cols + (p.has_perm ? __ldg(p.perm + c) : c)];
        xh[i] = v;
    }
    // batch > 2 with outliers: xt[c][b] = the same values transposed (zero for b >= nb), so the
    // outlier lookups of a row's four lanes fall in one 32-byte sector
    if (xt)
        for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < 16ull * p.cols;
             i += (uint64_t)gridDim.x * blockDim.x) {
            const uint32_t c = (uint32_t)(i / 16), b = (uint32_t)(i % 16);
            Act v = from_f<Act>(0.f);
            if ((int)b < nb) v = x[(uint64_t)b * p.cols + (p.has_perm ? __ldg(p.perm + c) : c)];
            xt[i] = v;
        }
}

// SK, the statistics kind: 0 = s-bit codes, both rows of a lane in one second-order block
// (β1 >= 16, so one stat2 quadruple per lane and tile); 1 = s-bit codes, any β1; 2 = fp16.
// One macro tile's loads for one lane: code words, statistics words (s-bit: the two words
// holding rows g and g+8's entries, side by side by stat_slot; fp16: the two rows' (scale, zero)
// pairs, one 8-byte load), the stat2 quadruples, and x (NH = 1: vectors 0..7; NH = 2: also
// 8..15).
// compile-time switches (measurement builds, run_device.sh probe; bench/NOTES.md v6j)
#ifndef SPQR_MMA_INTERLEAVE
#define SPQR_MMA_INTERLEAVE 1
#endif
// SPQR_MMA_L2PF > 0: for w = 3 and 4, each lane < rec_words / 32 pulls one 128-byte line of the
// warp's tile record this many tiles ahead into L2 (prefetch.global.L2). Measured (v6m): w4 4-10 %
// faster at batch 1, w3 1-2 % slower, so w4 only; after the paired statistics (v6p) w3 gains too
// (batch 1 28672x8192 77.0 → 71.0 µs); distances 1 and 3 are no better than 2 for w4. w2, w5-8
// not measured: off.
#ifndef SPQR_MMA_L2PF
#define SPQR_MMA_L2PF 2
#endif
template <int WB> constexpr int mma_l2_prefetch() {
    return WB == 3 || WB == 4 ? SPQR_MMA_L2PF : 0;
}

// Tile-record loads bypass L1 (ld.global.nc.L1::no_allocate) for batch 9-16 (NH = 2), so the
// streamed codes do not evict the 16 vectors' x from it: batch 16 w4 28672x8192 95.5 → 79.7 µs;
// for batch 1-8 it measured within ±2 % (w3 a little faster, w4 a little slower), so off there.
// SPQR_MMA_CODES_NA (a measurement switch): 0 never, 1 always, 2 batch 9-16 (bench/NOTES.md v6n).
#ifndef SPQR_MMA_CODES_NA
#define SPQR_MMA_CODES_NA 2
#endif
template <int NH> __device__ __forceinline__ uint32_t ld_rec(const uint32_t *p) {
    if constexpr (SPQR_MMA_CODES_NA == 1 || (SPQR_MMA_CODES_NA == 2 && NH == 2)) {
        uint32_t v;
        asm("ld.global.nc.L1::no_allocate.b32 %0, [%1];" : "=r"(v) : "l"(p));
        return v;
    } else {
        return __ldg(p);
    }
}
template <int NH> __device__ __forceinline__ uint2 ld_rec2(const uint32_t *p) { // 8-byte aligned
    if constexpr (SPQR_MMA_CODES_NA == 1 || (SPQR_MMA_CODES_NA == 2 && NH == 2)) {
        uint2 v;
        asm("ld.global.nc.L1::no_allocate.v2.b32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
        return v;
    } else {
        return __ldg(reinterpret_cast<const uint2 *>(p));
    }
}

// statistics words a lane loads per tile: its two rows' entries (PAIRSTATS: one 4s-bit field, at
// most two words; else two words per row; fp16: one word per row)
template <int SK> constexpr int stat_entry_words() {
    return SK == 2 || SPQR_MMA_PAIRSTATS ? 2 : 4;
}
// The kernels without fused outliers (OS = 0) and the batch-1 kernels with one row of outliers per
// lane (OS = 1) differ in two ways (bench/NOTES.md v6r), each a switch (0: no kernel, 1: the OS = 0
// and OS = 1 kernels, 2: every kernel; measurement builds):
// - SPQR_MMA_LATE_X: a tile's x is loaded by mma_compute, where it is used (an L1 hit under the
//   statistics decode), instead of with the tile's records one tile ahead: 16 fewer registers
//   across the loop (two buffers of 8). With the outlier state gone too, ptxas fits 64 registers
//   (four blocks per SM instead of three). The OS = 2 kernels, still at three blocks, lose 5 %.
// - SPQR_MMA_LANEPTR: the statistics, stat2 and prefetch addresses are pointers of their own,
//   advanced by one IMAD.WIDE per tile each; otherwise they are offsets from the code pointer,
//   which ptxas rebuilt from the thread index in every tile to save registers (~25 instructions
//   per tile). The OS = 2 kernels gain nothing from it at 80 registers.
#ifndef SPQR_MMA_LATE_X
#define SPQR_MMA_LATE_X 1
#endif
#ifndef SPQR_MMA_LANEPTR
#define SPQR_MMA_LANEPTR 1
#endif
// (the kernels with outlier rounds, OS = 8, are as lean as OS = 1's)
template <int OS> constexpr bool mma_late_x() {
    return SPQR_MMA_LATE_X == 2 || (SPQR_MMA_LATE_X == 1 && (OS <= 1 || OS >= 8));
}
template <int OS> constexpr bool mma_lane_ptr() {
    return SPQR_MMA_PAIRSTATS &&
           (SPQR_MMA_LANEPTR == 2 || (SPQR_MMA_LANEPTR == 1 && (OS <= 1 || OS >= 8)));
}
template <int NH, bool HasX> struct MmaRawX { uint4 x[NH][2]; };
template <int NH> struct MmaRawX<NH, false> {};
// One macro tile's loads for one lane (x only where mma_late_x is false).
template <int WB, int NH, int SK, int OS> struct MmaRaw : MmaRawX<NH, !mma_late_x<OS>()> {
    uint32_t c[WB];
    uint32_t e[stat_entry_words<SK>()];
    uint2 s2[SK == 1 ? 2 : 1];
};

// A lane's running position: pointers advance by one macro tile per mma_load.
struct LaneCtx {
    const uint32_t *codes; // code word 0 of this lane in the current tile record
    const uint8_t *x[2];   // x of vector 8n + g (clamped to nb − 1) at this lane's chunk
    const uint2 *s2[2];    // SK 1: stat2 of row g's / row g+8's block (group 0)
    uint32_t col;          // first stored column of this lane's chunk (64·m + 16·t)
    int eoff[2];           // from codes: the word holding row g / g+8's statistics entry
    int s2off;             // SK 0: from codes, the stat2 pair of this lane's group
    uint32_t esh[2];       // bit of row g / g+8's entry in that word (PAIRSTATS: [0] for both)
    uint32_t step;         // tiles between this warp's consecutive tiles (SPQR_MMA_INTERLEAVE)
    uint32_t rec_step;     // words between them (step · rec_words)
    int pf_left;           // SPQR_MMA_L2PF: tiles whose L2 prefetch is still to be issued
    // mma_lane_ptr: pointers advanced with codes (codes + eoff[0], codes + s2off, the line
    // this lane prefetches), so a tile's loads need no address arithmetic
    const uint32_t *stat, *s2w, *pf;
};

// x of the lane's chunk for vectors g (and 8 + g), then on to the warp's next tile.
template <int NH> __device__ __forceinline__ void mma_load_x(LaneCtx &L, uint4 (&x)[NH][2]) {
#pragma unroll
    for (int n = 0; n < NH; n++) {
        const uint4 *xv = reinterpret_cast<const uint4 *>(L.x[n]);
        x[n][0] = __ldg(xv), x[n][1] = __ldg(xv + 1);
        L.x[n] += 64 * 2 * L.step;
    }
}

template <int WB, int NH, int SK, int OS>
__device__ __forceinline__ void mma_load(const Params &p, LaneCtx &L, MmaRaw<WB, NH, SK, OS> &o) {
    constexpr bool kLanePtr = mma_lane_ptr<OS>();
#if SPQR_MMA_PROBE >= 3 && SPQR_MMA_PROBE <= 5 // w = 4 codes as one 16-byte load per lane
    if constexpr (WB == 4) {
        const uint4 v = __ldg(reinterpret_cast<const uint4 *>(L.codes + 3 * (threadIdx.x & 31)));
        o.c[0] = v.x, o.c[1] = v.y, o.c[2] = v.z, o.c[3] = v.w;
    } else
#endif
#pragma unroll
        for (int i = 0; i < WB; i++) o.c[i] = ld_rec<NH>(L.codes + i * 32);
    if constexpr (mma_l2_prefetch<WB>() > 0) {
        if constexpr (kLanePtr) {
            if (L.pf_left-- > 0) asm volatile("prefetch.global.L2 [%0];\n" ::"l"(L.pf));
        } else if (L.pf_left-- > 0 && 32 * (threadIdx.x & 31) < p.rec_words) {
            asm volatile("prefetch.global.L2 [%0];\n" ::"l"(
                L.codes + mma_l2_prefetch<WB>() * L.rec_step + 31 * (threadIdx.x & 31)));
        }
    }
#if SPQR_MMA_PROBE == 5 // timing probe: no statistics loads
    if (true) {
        o.e[0] = o.e[1] = L.col;
        if constexpr (SK != 2) o.s2[0] = make_uint2(L.col, L.col);
    } else
#endif
        if constexpr (SK == 2 && SPQR_MMA_PAIRSTATS) {
        // words stat_slot(g), stat_slot(g + 8)
        const uint2 v = ld_rec2<NH>(kLanePtr ? L.stat : L.codes + L.eoff[0]);
        o.e[0] = v.x, o.e[1] = v.y;
    } else if constexpr (SK == 2) {
        o.e[0] = ld_rec<NH>(L.codes + L.eoff[0]), o.e[1] = ld_rec<NH>(L.codes + L.eoff[1]);
    } else {
        const uint32_t *e = kLanePtr ? L.stat : L.codes + L.eoff[0];
        o.e[0] = ld_rec<NH>(e), o.e[1] = ld_rec<NH>(e + 1);
        if constexpr (!SPQR_MMA_PAIRSTATS)
            o.e[2] = ld_rec<NH>(L.codes + L.eoff[1]), o.e[3] = ld_rec<NH>(L.codes + L.eoff[1] + 1);
        if constexpr (SK == 0) {
            o.s2[0] = __ldg(reinterpret_cast<const uint2 *>(kLanePtr ? L.s2w : L.codes + L.s2off));
        } else {
            const uint32_t G = min(L.col >> p.log2beta2, p.groups - 1);
            o.s2[0] = __ldg(L.s2[0] + G), o.s2[1] = __ldg(L.s2[1] + G);
        }
    }
    if constexpr (!mma_late_x<OS>()) mma_load_x<NH>(L, o.x);
    L.codes += L.rec_step, L.col += 64 * L.step;
    if constexpr (kLanePtr) {
        L.stat += L.rec_step;
        if constexpr (SK == 0) L.s2w += L.rec_step;
        if constexpr (mma_l2_prefetch<WB>() > 0) L.pf += L.rec_step;
    }
}

__device__ __forceinline__ uint32_t h2_bits(__half2 h) {
    return *reinterpret_cast<uint32_t *>(&h);
}
__device__ __forceinline__ __half2 bits_h2(uint32_t u) {
    return *reinterpret_cast<__half2 *>(&u);
}

// Tile J (0..3) of a macro tile: A = the lane's pairs 4J..4J+3 decoded to fp16 weights
// (ŵ = scale·(q − zi) − scale·zf: HSUB2 makes q − zi exactly, one HFMA2), B = x words 2J, 2J+1.
template <int WB, int NH, int SK, typename Act, int OS, int J>
__device__ __forceinline__ void mma_tile(const MmaRaw<WB, NH, SK, OS> &o, const uint4 (&x)[NH][2],
                                         uint2 magic, const __half2 (&zq)[2],
                                         const __half2 (&sc)[2], const __half2 (&bi)[2],
                                         float (&acc)[NH][4]) {
    const uint32_t q[4] = {
        code_pair<WB, 4 * J + 0>(o.c, magic), code_pair<WB, 4 * J + 1>(o.c, magic),
        code_pair<WB, 4 * J + 2>(o.c, magic), code_pair<WB, 4 * J + 3>(o.c, magic)};
    uint32_t a[4];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        __half2 w;
        if constexpr (direct_decode<WB>()) // (q·2^-(14 + w))·(scale·2^(14 + w)) − scale·zero
            w = __hfma2(bits_h2(q[r]), sc[r & 1], bi[r & 1]);
        else if constexpr (SPQR_MMA_PROBE == 6 || SPQR_MMA_PROBE == 7) // timing probe: no HSUB2
            w = __hfma2(bits_h2(q[r]), sc[r & 1], __hadd2(bi[r & 1], zq[r & 1]));
        else
            w = __hfma2(__hsub2(bits_h2(q[r]), zq[r & 1]), sc[r & 1], bi[r & 1]);
        if constexpr (std::is_same<Act, __half>::value) {
            a[r] = h2_bits(w);
        } else {
            const __nv_bfloat162 wb = __float22bfloat162_rn(__half22float2(w));
            a[r] = *reinterpret_cast<const uint32_t *>(&wb);
        }
    }
#pragma unroll
    for (int n = 0; n < NH; n++) {
        const uint4 &xv = x[n][J >> 1];
        mma_16816(acc[n], a, (J & 1) ? xv.z : xv.x, (J & 1) ? xv.w : xv.y, Act());
    }
}

// SPQR_MMA_PROBE (a measurement build, never the library's: results are wrong; bench/NOTES.md
// v6 "ceilings", run_device.sh probe): 1 = loads only (every word a tile loads is XOR-folded into
// acc, no decode, no mma), 2 = no statistics decode (constant scale/zero; codes decoded, mma),
// 3 = loads only with w = 4 codes read as one 16-byte load per lane, 4 = the full kernel so,
// 5 = loads only without the statistics loads, 6 = no HSUB2 in the offset decode (w = 4-8 now),
// 7 = that and no straddling pairs (bench/NOTES.md v6v).

template <int WB, int NH, int SK, typename Act, int OS>
__device__ __forceinline__ void mma_compute(const Params &p, LaneCtx &L, uint2 magic,
                                            const MmaRaw<WB, NH, SK, OS> &o, float (&acc)[NH][4]) {
    uint4 x[NH][2];
    if constexpr (mma_late_x<OS>()) {
        mma_load_x<NH>(L, x);
    } else {
#pragma unroll
        for (int n = 0; n < NH; n++) x[n][0] = o.x[n][0], x[n][1] = o.x[n][1];
    }
#if SPQR_MMA_PROBE == 1 || SPQR_MMA_PROBE == 3 || SPQR_MMA_PROBE == 5
    uint32_t h = 0;
#pragma unroll
    for (int i = 0; i < WB; i++) h ^= o.c[i];
#pragma unroll
    for (int i = 0; i < stat_entry_words<SK>(); i++) h ^= o.e[i];
    if constexpr (SK != 2) h ^= o.s2[0].x ^ o.s2[0].y;
#pragma unroll
    for (int n = 0; n < NH; n++) h ^= x[n][0].x ^ x[n][1].w;
    acc[0][0] += __uint_as_float(h & 0x007fffffu); // a denormal: keeps every load live
#else
    // per row of the lane: scale, 1024 + zi and −scale·zf as fp16x2 (same value in both halves)
    __half2 sc[2], zq[2], bi[2];
    float2 s01, s23; // (ss, zs), (sz, zz) of the row's second-order block
    if constexpr (SK == 0)
        s01 = __half22float2(bits_h2(o.s2[0].x)), s23 = __half22float2(bits_h2(o.s2[0].y));
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float scale, zero;
#if SPQR_MMA_PROBE == 2
        if (true) {
            scale = 0.01f, zero = 3.25f + (float)(o.e[r] & 1u); // keeps the entry loads live
        } else
#endif
            if constexpr (SK == 2) {
            const float2 sz = __half22float2(bits_h2(o.e[r]));
            scale = sz.x, zero = sz.y;
        } else {
            if constexpr (SK == 1)
                s01 = __half22float2(bits_h2(o.s2[r].x)), s23 = __half22float2(bits_h2(o.s2[r].y));
            const uint32_t m = (1u << p.sbits) - 1u;
            uint32_t e;
            if constexpr (SPQR_MMA_PAIRSTATS) // row g's entry, then row g + 8's
                e = __funnelshift_r(o.e[0], o.e[1], L.esh[0]) >> (r ? 2 * p.sbits : 0);
            else
                e = __funnelshift_r(o.e[2 * r], o.e[2 * r + 1], L.esh[r]);
            scale = s01.x * ((float)(e & m) - s01.y); // spec §7.2 (no FMA: separate roundings)
            zero = s23.x * ((float)((e >> p.sbits) & m) - s23.y);
        }
        // zero = zi + zf with zi an integer (|zero| <= 512 checked at upload): (off + q) −
        // (off + zi) = q − zi is exact in fp16 (off = 1024 or 64), so the only roundings are of
        // scale (relative to |q − zi|·scale ≈ |ŵ|), of scale·zf (|zf| <= 1/2) and of the result;
        // decoding q·scale − scale·zero instead would cancel two terms of size |scale·zero| (1e-3
        // relative error at w = 8). At w = 2, 3 the zero is a few units, so the offset-free
        // decode (direct_decode) does just that: its simulated and measured error is ~1.3x the
        // offset decode's (bench/NOTES.md v6v), for one instruction fewer per pair.
        if constexpr (direct_decode<WB>()) {
            // w = 2, 3: ŵ = (q·2^-(14 + w))·b + c (mma_tile), b = scale·2^(14 + w) rounded to
            // fp16 (as scale would be: a power of two; upload keeps it finite), c = −(b·2^-(14 +
            // w))·zero rounded to fp16 once. Roughly: error ≤ 2^-11·(|ŵ| + |scale·(q − zero)| +
            // |scale·zero|), the last term in place of the offset decode's 2^-11·|scale·(zero −
            // round(zero))|.
            constexpr float up = (float)(1u << (14 + WB)), down = 1.f / up;
            const __half b = __float2half_rn(scale * up);
            sc[r] = __half2half2(b);
            bi[r] = __float2half2_rn(-(__half2float(b) * down) * zero);
            zq[r] = sc[r]; // (not read by the direct decode)
        } else {
            const float zi = rintf(zero);
            sc[r] = __float2half2_rn(scale);
            zq[r] = __float2half2_rn(pair_offset<WB>(r) + zi); // off + zi: an exact fp16
            bi[r] = __float2half2_rn(-scale * (zero - zi));
        }
    }
    mma_tile<WB, NH, SK, Act, OS, 0>(o, x, magic, zq, sc, bi, acc);
    mma_tile<WB, NH, SK, Act, OS, 1>(o, x, magic, zq, sc, bi, acc);
    mma_tile<WB, NH, SK, Act, OS, 2>(o, x, magic, zq, sc, bi, acc);
    mma_tile<WB, NH, SK, Act, OS, 3>(o, x, magic, zq, sc, bi, acc);
#endif
}

#ifndef SPQR_MMA_MINBLOCKS
#define SPQR_MMA_MINBLOCKS 3 // resident 8-warp blocks per SM asked of ptxas (bench/NOTES.md v6)
#endif
#ifndef SPQR_MMA_MINBLOCKS_OS4 // the same for the batch 3-4 kernels with fused outliers (OS = 4)
#define SPQR_MMA_MINBLOCKS_OS4 3
#endif
#ifndef SPQR_MMA_MINBLOCKS_OS1 // the same for the OS = 1 kernels (SPQR_MMA_OS1)
#define SPQR_MMA_MINBLOCKS_OS1 4
#endif
template <int NH, int OS> constexpr int mma_min_blocks() {
    return NH == 2              ? 2
           : OS == 4            ? SPQR_MMA_MINBLOCKS_OS4
           : OS == 1 || OS >= 8 ? SPQR_MMA_MINBLOCKS_OS1
                                : SPQR_MMA_MINBLOCKS;
}

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
// as rounds, each one more mma.m16n8k16 into acc (OS = 9, batch 2-8: eight, outlier_round_n). Batch
// 1 leaves the mma's n dimension idle: every column n of B is the same x, so every column of C
// holds the same sums, and the kernel's result for row r may be read from column n = r mod 8
// instead of 0. A round uses that: its B column n holds x at the columns of row pair (n, n + 8)'s
// outliers, so C[r][r mod 8] gains Σ_k A'[r][k]·x[col_k] for the 16 k-slots of row r's pair,
// A'[r][k] the fp16 correction of the pair's k-th outlier where it is row r's, else 0 (the other
// columns of C gain cross terms nobody reads). Lane (g, t) holds all of pair g's slots k = 2t, 2t +
// 1, 2t + 8, 2t + 9: A' rows g and g + 8 at those k and B column g at those k, so a round is one
// 16-byte load per lane (d.x, d.y: the four corrections as fp16; d.z, d.w: their columns, bit 15
// set where the outlier is row g + 8's), four 2-byte x lookups and one mma for up to 128 outliers
// of 16 rows. make_rounds (spqr_kernels.cu) fills a strip's rounds; its rounds are dealt to the
// strip's kw·ksplit warps, one per tile step.
template <> struct OutlierState<8> {
    static constexpr int kRows = 2; // (for the kernel's lane arithmetic; no rows walked)
    uint32_t k, end;                // the warp's next round, the strip's end (rptr)
    uint4 d;                        // round k's slots of this lane, loaded one step ahead
    __device__ bool entries_left() const { return k < end; }
};
// OS = 9: the same for batch 2-8 (outlier_round_n), its own kernels so that batch 1's stay lean.
template <> struct OutlierState<9> : OutlierState<8> {};

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
// B' registers of four slots' columns (z, w: two 15-bit columns each): x there, paired.
__device__ __forceinline__ uint2 round_b(const uint16_t *xs, uint32_t z, uint32_t w) {
    const uint32_t x0 = __ldg(xs + (z & 0x7fffu)), x1 = __ldg(xs + ((z >> 16) & 0x7fffu));
    const uint32_t x2 = __ldg(xs + (w & 0x7fffu)), x3 = __ldg(xs + ((w >> 16) & 0x7fffu));
    return make_uint2(__byte_perm(x0, x1, 0x5410), __byte_perm(x2, x3, 0x5410));
}

// One outlier round (OS = 8), batch 1: A' and B' of the lane's four slots, then the mma into acc.
template <typename Act>
__device__ __forceinline__ void outlier_round(const Act *__restrict__ xh, const uint4 &d,
                                              float (&acc)[4]) {
    uint32_t a[4];
    round_a<Act>(d, a);
    const uint2 b = round_b(reinterpret_cast<const uint16_t *>(xh), d.z, d.w); // vector 0
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
template <typename Act>
__device__ __forceinline__ void outlier_round_n(const Act *__restrict__ xh, uint32_t xstride,
                                                int nb, const uint4 &d, float (&acc)[4]) {
    const uint32_t lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    uint32_t own[4];
    round_a<Act>(d, own);
    const uint16_t *xs =
        reinterpret_cast<const uint16_t *>(xh + (uint64_t)min((int)g, nb - 1) * xstride);
#pragma unroll kRoundUnroll
    for (uint32_t gp = 0; gp < 8; gp++) {
        const uint2 b = round_b(xs, __shfl_sync(0xffffffffu, d.z, 4 * gp + t),
                                __shfl_sync(0xffffffffu, d.w, 4 * gp + t));
        const uint32_t a[4] = {g == gp ? own[0] : 0u, g == gp ? own[1] : 0u, g == gp ? own[2] : 0u,
                               g == gp ? own[3] : 0u};
        mma_16816(acc, a, b.x, b.y, Act());
    }
}

template <int NH, int OS, typename Act>
__device__ __forceinline__ void outlier_step(const Params &p, const Act *__restrict__ xh,
                                             const Act *__restrict__ xt, uint32_t xstride, int nb,
                                             uint32_t t, uint32_t step, OutlierState<OS> &o,
                                             float (&acc)[NH][4]) {
    if constexpr (OS >= 8) {
        if (o.k < o.end) { // (the same in every lane of the warp)
            if constexpr (OS == 8)
                outlier_round<Act>(xh, o.d, acc[0]);
            else
                outlier_round_n<Act>(xh, xstride, nb, o.d, acc[0]);
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

// Batch 9-16 outliers in their own pass (SPQR_MMA_OUTL_ROWS; bench/NOTES.md v6p): one warp per
// row, its entries dealt to the 32 lanes, each entry multiplied into all 16 vectors at once from
// xt (x transposed: 16 values per column, zero past nb; two 16-byte loads), then a reduce-scatter
// over the warp (8 + 4 + 2 + 1 + 1 shuffles) leaves vector (lane >> 1)'s sum in the even lanes:
// o32[b][row] = Σ_k delta_k · x[b][col_k] (fp32). Inside the tensor-core kernel each lane of a
// row walked all of its share of the row's entries for its own four vectors, one entry per tile
// behind a dependent load: w3 1 % batch 16 took 1.6-1.8x the time of the same tensor without
// outliers. The tensor-core kernel then adds o32 in its epilogue.
template <typename Act>
__global__ void __launch_bounds__(256)
    outlier_rows_kernel(Params p, const Act *__restrict__ xt, int nb, float *__restrict__ o32) {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::); // the matmul may start streaming
    asm volatile("griddepcontrol.wait;\n" ::: "memory");    // xt comes from prep_xh_kernel
#endif
    const uint32_t lane = threadIdx.x & 31;
    const uint32_t row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= p.rows) return;
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
    const int b = (int)(lane >> 1);
    if (!(lane & 1) && b < nb) o32[(uint64_t)b * p.rows + row] = o[0];
}

// Grid: a block of 8 warps owns 8/kw strips (kw = 1, 2, 4 or 8 warps per strip, each over a
// contiguous range of the strip's macro tiles); with ksplit > 1 (only with kw = 8, for layers with
// few rows and many columns) ksplit blocks share a strip. Partial sums meet in shared memory; with
// ksplit > 1 the blocks add theirs into acc32 (fp32, zero between calls) and the last block of the
// strip to arrive (a counter per strip) writes y and re-zeroes acc32 and the counter.
template <int WB, int NH, int SK, typename Act, int OS>
__global__ void __launch_bounds__(kMmaThreads, mma_min_blocks<NH, OS>())
    mma_kernel(Params p, const Act *__restrict__ xh, const Act *__restrict__ xt, uint32_t xstride,
               Act *__restrict__ y, float *__restrict__ y32, int nb, int kw_log2, uint32_t ksplit,
               float *__restrict__ acc32, uint32_t *__restrict__ counters, uint32_t magic,
               const float *__restrict__ o32) {
    __shared__ float red[kMmaWarps][16][8 * NH + 1];
    __shared__ uint32_t last_block;
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t kw = 1u << kw_log2, kwi = warp & (kw - 1), set = warp >> kw_log2;
    const uint32_t sets = kMmaWarps >> kw_log2;
    const uint32_t q = blockIdx.x % ksplit, S = (blockIdx.x / ksplit) * sets + set;
    const uint32_t g = lane >> 2, t = lane & 3;
    float acc[NH][4];
#pragma unroll
    for (int n = 0; n < NH; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;

    OutlierState<OS> os;
    constexpr int orows = OutlierState<OS>::kRows;
    const bool spread = outl_spread<OS>(nb);
    // spread: the lanes of a row split its entries (4 lanes; OS = 1: the 2 lanes t, t ^ 1)
    const uint32_t olanes = orows == 2 ? 4 : 2, olane = orows == 2 ? t : t & 1;
    const uint32_t ostep = kw * ksplit * (spread && OS < 8 ? olanes : 1);
    const uint32_t ofirst = spread ? olane + olanes * (kwi + kw * q) : kwi + kw * q;
    if constexpr (OS >= 8) {
        os.k = os.end = 0;
        if (p.fuse_outliers && S < p.strips) {
            os.k = __ldg(p.rptr + S) + kwi + kw * q, os.end = __ldg(p.rptr + S + 1);
            if (os.k < os.end) os.d = __ldg(p.rounds + (uint64_t)os.k * 32 + lane);
        }
    } else {
#pragma unroll
        for (int r = 0; r < orows; r++) {
            const uint32_t row = 16 * S + g + 8 * (orows == 2 ? r : t >> 1);
            os.k[r] = os.end[r] = 0, os.col[r] = 0, os.d[r] = 0.f;
#pragma unroll
            for (int h = 0; h < OS; h++) os.o[r][h] = 0.f;
            if (OS > 0 && p.fuse_outliers && S < p.strips && row < p.rows &&
                (spread || 2 * (int)t < nb)) {
                os.k[r] = __ldg(p.rowptr + row) + ofirst;
                os.end[r] = __ldg(p.rowptr + row + 1);
                if (os.k[r] < os.end[r])
                    os.col[r] = outlier_col(p, os.k[r]), os.d[r] = __ldg(p.delta + os.k[r]);
            }
        }
    }

    if (S < p.strips) {
        const uint32_t per_block = (p.mtiles + ksplit - 1) / ksplit;
        const uint32_t b0 = min(q * per_block, p.mtiles), b1 = min(b0 + per_block, p.mtiles);
#if SPQR_MMA_INTERLEAVE
        // the block's tiles dealt round-robin to the strip's kw warps: at any moment they read
        // neighbouring tiles, one DRAM stream per strip instead of kw (bench/NOTES.md v6j)
        const uint32_t m0 = min(b0 + kwi, b1), ntiles = (b1 - m0 + kw - 1) >> kw_log2;
        const uint32_t step = kw;
#else
        const uint32_t per_warp = (b1 - b0 + kw - 1) >> kw_log2;
        const uint32_t m0 = min(b0 + kwi * per_warp, b1), ntiles = min(m0 + per_warp, b1) - m0;
        const uint32_t step = 1;
#endif
        LaneCtx L;
        L.step = step;
        L.codes = p.tcodes + ((uint64_t)S * p.mtiles + m0) * p.rec_words + lane;
        L.rec_step = step * p.rec_words;
        L.pf_left = (int)ntiles - mma_l2_prefetch<WB>();
        L.col = 64 * m0 + 16 * t;
        const uint32_t gi = (16 * t) >> p.log2beta2; // this lane's group in a tile record
        L.s2off = (int)(p.rec_s2 + 2 * gi) - (int)lane;
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const uint32_t rr = g + 8 * r, row = min(16 * S + rr, p.rows - 1);
            L.s2[r] = reinterpret_cast<const uint2 *>(p.stat2) +
                      (uint64_t)(row >> p.log2beta1) * p.groups;
            const uint32_t bit = (SK == 2 ? 32 : 2 * p.sbits) * stat_slot(rr);
            L.eoff[r] = (int)(WB * 32 + gi * p.tstat_words + (bit >> 5)) - (int)lane;
            L.esh[r] = bit & 31;
        }
        L.stat = L.codes + L.eoff[0], L.s2w = L.codes + L.s2off;
        // lane l prefetches line l of the record mma_l2_prefetch tiles ahead (lanes past the
        // record's lines repeat one: every lane issues the instruction anyway)
        L.pf = L.codes - lane + mma_l2_prefetch<WB>() * L.rec_step +
               32 * (lane % ((p.rec_words + 31) / 32));
#pragma unroll
        for (int n = 0; n < NH; n++)
            L.x[n] = reinterpret_cast<const uint8_t *>(
                xh + (uint64_t)min((int)(8 * n + g), nb - 1) * xstride + 64 * m0 + 16 * t);
            // before xh is ready (prep_xh_kernel, launched as our programmatic predecessor): pull
            // the first two tiles' code words towards L2, then wait for the predecessor's writes
#pragma unroll
        for (int i = 0; i < 2 * WB; i++)
            if ((uint32_t)(i / WB) < ntiles)
                asm volatile("prefetch.global.L2 [%0];\n" ::"l"(L.codes + (i / WB) * L.rec_step +
                                                                (i % WB) * 32));
#if __CUDA_ARCH__ >= 900
        asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
        MmaRaw<WB, NH, SK, OS> ra, rb;
        // both magics derived from the argument, so they stay registers (see code_pair)
        const uint2 mg = make_uint2(magic, magic - (kMagic2 - kMagic2_64));
        uint32_t m = 0; // tiles done
        if (m < ntiles) mma_load<WB, NH, SK, OS>(p, L, ra);
        while (m < ntiles) {
            if (m + 1 < ntiles) mma_load<WB, NH, SK, OS>(p, L, rb);
            mma_compute<WB, NH, SK, Act, OS>(p, L, mg, ra, acc);
            outlier_step<NH, OS, Act>(p, xh, xt, xstride, nb, t, ostep, os, acc);
            if (++m >= ntiles) break;
            if (m + 1 < ntiles) mma_load<WB, NH, SK, OS>(p, L, ra);
            mma_compute<WB, NH, SK, Act, OS>(p, L, mg, rb, acc);
            outlier_step<NH, OS, Act>(p, xh, xt, xstride, nb, t, ostep, os, acc);
            ++m;
        }
    }
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory"); // (no-op when already waited)
#endif
    // rows with more entries than the warp had tiles
    while (os.entries_left()) outlier_step<NH, OS, Act>(p, xh, xt, xstride, nb, t, ostep, os, acc);
    if constexpr (OS == 1) { // lanes t = 0, 1 hold row g's halves, t = 2, 3 row g + 8's: to lane 0
        float v = os.o[0][0];
        v += __shfl_xor_sync(0xffffffffu, v, 1);
        const float v8 = __shfl_down_sync(0xffffffffu, v, 2);
        if (t == 0) acc[0][0] += v, acc[0][2] += v8;
    } else if constexpr (OS > 0 && OS < 8) {
        if (spread) {
            // fold the four lanes' sums into the lane holding vector h (t = h / 2)
#pragma unroll
            for (int r = 0; r < 2; r++)
#pragma unroll
                for (int h = 0; h < OS; h++) {
                    float v = os.o[r][h];
                    v += __shfl_xor_sync(0xffffffffu, v, 1);
                    v += __shfl_xor_sync(0xffffffffu, v, 2);
                    if (t == (uint32_t)(h >> 1)) acc[0][2 * r + (h & 1)] += v;
                }
        }
    }

    // C fragment: acc[n][0..1] = (row g, vectors 8n + 2t, +1), acc[n][2..3] = row g + 8
#pragma unroll
    for (int n = 0; n < NH; n++) {
        red[warp][g][8 * n + 2 * t] = acc[n][0], red[warp][g][8 * n + 2 * t + 1] = acc[n][1];
        red[warp][g + 8][8 * n + 2 * t] = acc[n][2];
        red[warp][g + 8][8 * n + 2 * t + 1] = acc[n][3];
    }
    __syncthreads();
    const uint32_t items = sets * 16 * (uint32_t)nb;
    for (uint32_t i = threadIdx.x; i < items; i += kMmaThreads) {
        const uint32_t st = i / (16 * nb), rr = (i / nb) % 16, b = i % nb;
        const uint32_t row = ((blockIdx.x / ksplit) * sets + st) * 16 + rr;
        if (row >= p.rows) continue;
        float v = 0.f;
        const uint32_t n = OS == 8 ? (rr & 7) : b; // (OS = 8 batch 1: row r in C column r mod 8)
        for (uint32_t j = 0; j < kw; j++) v += red[st * kw + j][rr][n];
        if (o32 && ksplit == 1) v += o32[(uint64_t)b * p.rows + row]; // outlier_rows_kernel's
        if (ksplit > 1)
            atomicAdd(acc32 + (uint64_t)b * p.rows + row, v);
        else if (y32)
            y32[(uint64_t)b * p.rows + row] = v;
        else
            y[(uint64_t)b * p.rows + row] = from_f<Act>(v);
    }
    if (ksplit == 1) return;
    // ksplit > 1: sets == 1, S is the block's strip
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_block = atomicAdd(counters + S, 1u) == ksplit - 1;
    __syncthreads();
    if (!last_block) return;
    __threadfence();
    for (uint32_t i = threadIdx.x; i < 16 * (uint32_t)nb; i += kMmaThreads) {
        const uint32_t rr = i / nb, b = i % nb, row = 16 * S + rr;
        if (row >= p.rows) continue;
        float *a = acc32 + (uint64_t)b * p.rows + row;
        const float v = __ldcg(a) + (o32 ? o32[(uint64_t)b * p.rows + row] : 0.f);
        __stcg(a, 0.f);
        if (y32)
            y32[(uint64_t)b * p.rows + row] = v;
        else
            y[(uint64_t)b * p.rows + row] = from_f<Act>(v);
    }
    if (threadIdx.x == 0) counters[S] = 0;
}

} // namespace
} // namespace spqr_cu
