// mma_decode.cuh — the tensor-core kernel's (mma_kernel.cuh) work on one macro tile: a lane's
// loads (code words, statistics, stat2, x), the decode of codes and statistics to fp16 weights,
// and the mma.sync products; also the x permute that runs before it (prep_xh_kernel).
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
                               uint32_t stride, Act *__restrict__ xt, int xt_paired) {
    // let the matmul kernel launch now (programmatic dependent launch): it streams its first
    // weights while this runs and waits (pdl_wait) before it reads xh
    pdl_trigger();
    const uint64_t total = (uint64_t)nb * stride;
    const uint64_t i0 = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x;
    // the thread's first permutation entry read before the wait (perm is the tensor's, which no
    // kernel writes): where the matmul before lets this kernel launch early (a CUDA graph,
    // SPQR_MMA_GRAPH_TRIGGER) that DRAM trip overlaps it (bench/NOTES.md v7p)
    const uint32_t c0 = (uint32_t)(i0 % stride);
    const uint32_t src0 = i0 < total && c0 < p.cols ? (p.has_perm ? __ldg(p.perm + c0) : c0) : 0;
    // launched itself as a programmatic dependent (SPQR_PDL_PREP): x may come from the kernel
    // before, and the matmul before may still read xh, so wait for it (a no-op otherwise)
    pdl_wait();
    for (uint64_t i = i0; i < total; i += (uint64_t)gridDim.x * blockDim.x) {
        const uint32_t b = (uint32_t)(i / stride), c = (uint32_t)(i % stride);
        Act v = from_f<Act>(0.f);
        if (c < p.cols)
            v = x[(uint64_t)b * p.cols + (i == i0 ? src0 : p.has_perm ? __ldg(p.perm + c) : c)];
        xh[i] = v;
    }
    // batch > 8 with outliers: xt[c][b] = the same values transposed (zero for b >= nb), so the
    // outlier lookups of a row's four lanes fall in one 32-byte sector; paired (the batch 9-16
    // rounds, outlier_round_n2): xt[c][2g + n] = x[8n + g][c], vectors g and 8 + g side by side
    if (xt)
        for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < 16ull * p.cols;
             i += (uint64_t)gridDim.x * blockDim.x) {
            const uint32_t c = (uint32_t)(i / 16), j = (uint32_t)(i % 16);
            const uint32_t b = xt_paired ? 8 * (j & 1) + (j >> 1) : j;
            Act v = from_f<Act>(0.f);
            if ((int)b < nb) v = x[(uint64_t)b * p.cols + (p.has_perm ? __ldg(p.perm + c) : c)];
            xt[i] = v;
        }
}

// SK, the statistics kind: 0 = s-bit codes, both rows of a lane in one second-order block
// (β1 >= 16, so one stat2 quadruple per lane and tile); 1 = s-bit codes, any β1; 2 = fp16;
// 3 = as 0 with β2 = 8: a lane's 16 columns are two groups (tiles J = 0, 1 of the macro tile
// group 2t of the record, J = 2, 3 group 2t + 1), so two statistics entries per row and two stat2
// quadruples (one 16-byte load: make_tiled aligns them) per lane and tile; 4 = as 1 with β2 = 8
// (two groups, two stat2 quadruples per row). SK 1 and 4 read stat2 per row: with β1 = 8 from the
// tile record (row g's in the strip's first block, row g + 8's in its second), with β1 < 8 from
// the stored array.
template <int SK> constexpr int sk_groups() { // groups of a lane's chunk per row
    return SK == 3 || SK == 4 ? 2 : 1;
}
template <int SK> constexpr bool sk_rec_s2() { // stat2 read from the tile record
    return SK == 0 || SK == 3;
}
template <int SK> constexpr bool sk_row_s2() { // stat2 per row (β1 < 16)
    return SK == 1 || SK == 4;
}
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
    static_assert(sk_groups<SK>() == 1 || SPQR_MMA_PAIRSTATS, "beta2 = 8 needs PAIRSTATS");
    return sk_groups<SK>() == 2 ? 4 : SK == 2 || SPQR_MMA_PAIRSTATS ? 2 : 4;
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
// (the kernels with outlier rounds, OS = 8 and 9, are as lean as OS = 1's; at batch 9-16, NH = 2,
// only with SPQR_MMA_LEAN_NH2 = 1, bench/NOTES.md v7b)
#ifndef SPQR_MMA_LEAN_NH2
#define SPQR_MMA_LEAN_NH2 1
#endif
template <int NH, int OS> constexpr bool mma_lean() {
    return OS <= 1 || (OS >= 8 && (NH == 1 || SPQR_MMA_LEAN_NH2));
}
template <int NH, int OS> constexpr bool mma_late_x() {
    return SPQR_MMA_LATE_X == 2 || (SPQR_MMA_LATE_X == 1 && mma_lean<NH, OS>());
}
template <int NH, int OS> constexpr bool mma_lane_ptr() {
    return SPQR_MMA_PAIRSTATS &&
           (SPQR_MMA_LANEPTR == 2 || (SPQR_MMA_LANEPTR == 1 && mma_lean<NH, OS>()));
}
template <int NH, bool HasX> struct MmaRawX { uint4 x[NH][2]; };
template <int NH> struct MmaRawX<NH, false> {};
// One macro tile's loads for one lane (x only where mma_late_x is false).
template <int WB, int NH, int SK, int OS> struct MmaRaw : MmaRawX<NH, !mma_late_x<NH, OS>()> {
    uint32_t c[WB];
    uint32_t e[stat_entry_words<SK>()];
    uint2 s2[SK == 4 ? 4 : SK == 1 || SK == 3 ? 2 : 1]; // SK 4: [2·group + row]
};

// A lane's running position: pointers advance by one macro tile per mma_load.
struct LaneCtx {
    const uint32_t *codes; // code word 0 of this lane in the current tile record
    const uint8_t *x[2];   // x of vector 8n + g (clamped to nb − 1) at this lane's chunk
    const uint2 *s2[2];    // SK 1, 4, β1 < 8: stat2 of row g's / row g+8's block (group 0)
    uint32_t col;          // first stored column of this lane's chunk (64·m + 16·t)
    int eoff[2];           // from codes: the word holding row g / g+8's statistics entry
    int s2off;             // from codes, the stat2 pair of this lane's (first) group (rec_s2)
    uint32_t esh[2];       // bit of row g / g+8's entry in that word (PAIRSTATS: [0] for both)
    uint32_t step;         // tiles between this warp's consecutive tiles (SPQR_MMA_INTERLEAVE)
    uint32_t rec_step;     // words between them (step · rec_words)
    int pf_left;           // SPQR_MMA_L2PF: tiles whose L2 prefetch is still to be issued
    // mma_lane_ptr: pointers advanced with codes (codes + eoff[0], codes + s2off, the line
    // this lane prefetches), so a tile's loads need no address arithmetic
    const uint32_t *stat, *s2w, *pf;
};

// x of the lane's chunk for vectors g (and 8 + g), then on to the warp's next tile. XS: x is in
// the block's shared memory (mma_kernel.cuh), so generic loads instead of the read-only path.
template <int NH, bool XS = false>
__device__ __forceinline__ void mma_load_x(LaneCtx &L, uint4 (&x)[NH][2]) {
#pragma unroll
    for (int n = 0; n < NH; n++) {
        const uint4 *xv = reinterpret_cast<const uint4 *>(L.x[n]);
        if constexpr (XS)
            x[n][0] = xv[0], x[n][1] = xv[1];
        else
            x[n][0] = __ldg(xv), x[n][1] = __ldg(xv + 1);
        L.x[n] += 64 * 2 * L.step;
    }
}

template <int WB, int NH, int SK, int OS>
__device__ __forceinline__ void mma_load(const Params &p, LaneCtx &L, MmaRaw<WB, NH, SK, OS> &o) {
    constexpr bool kLanePtr = mma_lane_ptr<NH, OS>();
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
        if constexpr (sk_groups<SK>() == 2) o.e[2] = o.e[3] = L.col, o.s2[1] = o.s2[0];
        if constexpr (SK == 4) o.s2[2] = o.s2[3] = o.s2[0];
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
        if constexpr (sk_groups<SK>() == 2) // the second group's block follows the first's
            o.e[2] = ld_rec<NH>(e + p.tstat_words), o.e[3] = ld_rec<NH>(e + p.tstat_words + 1);
        if constexpr (SK == 3) {
            const uint4 v =
                __ldg(reinterpret_cast<const uint4 *>(kLanePtr ? L.s2w : L.codes + L.s2off));
            o.s2[0] = make_uint2(v.x, v.y), o.s2[1] = make_uint2(v.z, v.w);
        } else if constexpr (SK == 0) {
            o.s2[0] = __ldg(reinterpret_cast<const uint2 *>(kLanePtr ? L.s2w : L.codes + L.s2off));
        } else if (p.rec_s2) { // SK 1, 4 with β1 = 8: row g's block, then row g + 8's
            // (rec_s2_word: the second block's pairs 2·tgpt words on)
            const uint32_t *s2w = kLanePtr ? L.s2w : L.codes + L.s2off;
            if constexpr (SK == 4) {
                const uint4 a = __ldg(reinterpret_cast<const uint4 *>(s2w));
                const uint4 b = __ldg(reinterpret_cast<const uint4 *>(s2w + 2 * p.tgpt));
                o.s2[0] = make_uint2(a.x, a.y), o.s2[1] = make_uint2(b.x, b.y);
                o.s2[2] = make_uint2(a.z, a.w), o.s2[3] = make_uint2(b.z, b.w);
            } else {
                o.s2[0] = __ldg(reinterpret_cast<const uint2 *>(s2w));
                o.s2[1] = __ldg(reinterpret_cast<const uint2 *>(s2w + 2 * p.tgpt));
            }
        } else { // SK 1, 4 with β1 < 8: from the stored array
            const uint32_t G = min(L.col >> p.log2beta2, p.groups - 1);
            o.s2[0] = __ldg(L.s2[0] + G), o.s2[1] = __ldg(L.s2[1] + G);
            if constexpr (SK == 4) {
                const uint32_t G1 = min((L.col >> p.log2beta2) + 1, p.groups - 1);
                o.s2[2] = __ldg(L.s2[0] + G1), o.s2[3] = __ldg(L.s2[1] + G1);
            }
        }
    }
    if constexpr (!mma_late_x<NH, OS>()) mma_load_x<NH>(L, o.x);
    L.codes += L.rec_step, L.col += 64 * L.step;
    if constexpr (kLanePtr) {
        L.stat += L.rec_step;
        if constexpr (SK != 2) L.s2w += L.rec_step;
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
// zq, sc, bi: the statistics of the group holding columns 16t + 4J .. +3 (per row of the lane).
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

// SPQR_MMA_STATFOLD (bench/NOTES.md v6z): 1 = for the direct decode with one stat2 block per
// lane and tile (w = 2, 3; SK = 0, PAIRSTATS), the powers of two folded into the stat2 terms once
// per tile; 2 = that, and q converted without I2F. Bit-identical to the per-row decode below:
// - b = fp16(scale·2^(14 + w)), scale = fl(ss·(qs − zs)): a power-of-two factor commutes with
//   rounding while every value stays a normal fp32 (|ss·(qs − zs)| >= 2^-48, far from overflow),
//   so fl(ss·(qs − zs))·2^(14 + w) = fl((ss·2^(14 + w))·(qs − zs));
// - c = fp16(fl(−(b·2^-(14 + w))·zero)), zero = fl(sz·(qz − zz)): the same real product as
//   −b·fl((sz·2^-(14 + w))·(qz − zz)), whose second factor is zero·2^-(14 + w) exactly;
// - STATFOLD 2: the float of q is the bits 0x4B000000 | q (2^23 + q) minus 2^23, exact for
//   q < 2^23; the zero field is masked in place (qz·2^s < 2^16) and one FFMA gives
//   fl(qz·2^s·2^-s − zz) = fl(qz − zz).
#ifndef SPQR_MMA_STATFOLD
#define SPQR_MMA_STATFOLD 2
#endif
// SPQR_MMA_PACK_STATS 1: direct_stats_folded converts both rows' b (and c) to fp16 as one pair
// instead of one pair per row: two conversions fewer per tile, bit-identical (bench/NOTES.md
// v7j). SK = 0 only: at β2 = 8 (SK = 3, two groups a lane) batch 1 measured 3-4 % slower with it
// (same call, H100, w3 1 % 28672x8192 59.8 → 61.6 µs, 8192x28672 60.4 → 62.9). 0: never.
#ifndef SPQR_MMA_PACK_STATS
#define SPQR_MMA_PACK_STATS 1
#endif
template <int WB, int SK> constexpr bool stat_fold() {
    return SPQR_MMA_STATFOLD && sk_rec_s2<SK>() && SPQR_MMA_PAIRSTATS && direct_decode<WB>();
}
// e0, e1: the two words holding the lane's entries of one group (rows g and g + 8).
template <int WB, int SK>
__device__ __forceinline__ void direct_stats_folded(const Params &p, const LaneCtx &L, uint32_t e0,
                                                    uint32_t e1, float2 s01, float2 s23,
                                                    __half2 (&sc)[2], __half2 (&bi)[2]) {
    constexpr float up = (float)(1u << (14 + WB)), down = 1.f / up;
    const float ss_up = s01.x * up, sz_down = s23.x * down; // exact (see above)
    const uint32_t ef = __funnelshift_r(e0, e1, L.esh[0]);  // row g's entry, then row g + 8's
    float bf[2], zf[2]; // per row: scale·2^(14 + w) and zero·2^-(14 + w), in fp32
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const uint32_t er = r ? ef >> (2 * p.sbits) : ef;
        float dq_s, dq_z; // qs − zs and qz − zz, each rounded once (spec §7.2)
        if constexpr (SPQR_MMA_STATFOLD == 2) {
            dq_s = (__uint_as_float((er & p.smask) | 0x4B000000u) - 8388608.f) - s01.y;
            dq_z = fmaf(__uint_as_float((er & p.zmask) | 0x4B000000u) - 8388608.f, p.zstep, -s23.y);
        } else {
            dq_s = (float)(er & p.smask) - s01.y;
            dq_z = (float)((er >> p.sbits) & p.smask) - s23.y;
        }
        bf[r] = ss_up * dq_s, zf[r] = sz_down * dq_z;
    }
    if constexpr (SPQR_MMA_PACK_STATS && SK == 0) {
        // both rows' b in one fp16 pair (one conversion), then both c: mma_tile's HFMA2 picks a
        // row's half by operand selector (.H0_H0 / .H1_H1), the same bits as one pair per row
        const __half2 b2 = __floats2half2_rn(bf[0], bf[1]);
        const __half2 c2 = __floats2half2_rn(-__low2float(b2) * zf[0], -__high2float(b2) * zf[1]);
        sc[0] = __low2half2(b2), sc[1] = __high2half2(b2);
        bi[0] = __low2half2(c2), bi[1] = __high2half2(c2);
    } else {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            sc[r] = __float2half2_rn(bf[r]);                       // b
            bi[r] = __float2half2_rn(-__low2float(sc[r]) * zf[r]); // c
        }
    }
}

// The per-row decode of a lane's two rows' statistics (of one group: e = its entry words, e[0] and
// e[1], or with !PAIRSTATS e[0..3]; SK 1, 4: s2 = each row's stat2) into (sc, zq, bi) for mma_tile:
// scale, then the offset decode's 1024 + zi and −scale·zf, or the direct decode's b and c (w = 2,
// 3).
template <int WB, int SK>
__device__ __forceinline__ void
mma_stats_rows(const Params &p, const LaneCtx &L, const uint32_t *e_words, const uint2 *s2,
               float2 s01, float2 s23, __half2 (&sc)[2], __half2 (&zq)[2], __half2 (&bi)[2]) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float scale, zero;
#if SPQR_MMA_PROBE == 2
        if (true) {
            scale = 0.01f, zero = 3.25f + (float)(e_words[r] & 1u); // keeps the entry loads live
        } else
#endif
            if constexpr (SK == 2) {
            const float2 sz = __half22float2(bits_h2(e_words[r]));
            scale = sz.x, zero = sz.y;
        } else {
            if constexpr (sk_row_s2<SK>())
                s01 = __half22float2(bits_h2(s2[r].x)), s23 = __half22float2(bits_h2(s2[r].y));
            const uint32_t m = (1u << p.sbits) - 1u;
            uint32_t e;
            if constexpr (SPQR_MMA_PAIRSTATS) // row g's entry, then row g + 8's
                e = __funnelshift_r(e_words[0], e_words[1], L.esh[0]) >> (r ? 2 * p.sbits : 0);
            else
                e = __funnelshift_r(e_words[2 * r], e_words[2 * r + 1], L.esh[r]);
            scale = s01.x * ((float)(e & m) - s01.y); // spec §7.2 (no FMA: separate roundings)
            zero = s23.x * ((float)((e >> p.sbits) & m) - s23.y);
        }
        // zero = zi + zf with zi an integer (|zero| <= 512 checked at upload): (off + q) −
        // (off + zi) = q − zi is exact in fp16 (off = 1024 or 64), so the only roundings are of
        // scale (relative to |q − zi|·scale ≈ |ŵ|), of scale·zf (|zf| <= 1/2) and of the
        // result; decoding q·scale − scale·zero instead would cancel two terms of size
        // |scale·zero| (1e-3 relative error at w = 8). At w = 2, 3 the zero is a few units, so
        // the offset-free decode (direct_decode) does just that: its simulated and measured
        // error is ~1.3x the offset decode's (bench/NOTES.md v6v), for one instruction fewer
        // per pair.
        if constexpr (direct_decode<WB>()) {
            // w = 2, 3: ŵ = (q·2^-(14 + w))·b + c (mma_tile), b = scale·2^(14 + w) rounded to
            // fp16 (as scale would be: a power of two; upload keeps it finite), c = −(b·2^-(14
            // + w))·zero rounded to fp16 once. Roughly: error ≤ 2^-11·(|ŵ| + |scale·(q − zero)|
            // + |scale·zero|), the last term in place of the offset decode's 2^-11·|scale·(zero
            // − round(zero))|.
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
}

template <int WB, int NH, int SK, typename Act, int OS, bool XS = false>
__device__ __forceinline__ void mma_compute(const Params &p, LaneCtx &L, uint2 magic,
                                            const MmaRaw<WB, NH, SK, OS> &o, float (&acc)[NH][4]) {
    static_assert(!XS || mma_late_x<NH, OS>(), "x from shared memory: loaded here only");
    uint4 x[NH][2];
    if constexpr (mma_late_x<NH, OS>()) {
        mma_load_x<NH, XS>(L, x);
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
    if constexpr (SK != 2)
        for (const uint2 &v : o.s2) h ^= v.x ^ v.y;
#pragma unroll
    for (int n = 0; n < NH; n++) h ^= x[n][0].x ^ x[n][1].w;
    acc[0][0] += __uint_as_float(h & 0x007fffffu); // a denormal: keeps every load live
#else
    // per group of the lane's chunk (SK 3, 4: two) and row of the lane: scale, 1024 + zi and
    // −scale·zf as fp16x2 (same value in both halves)
    constexpr int G = sk_groups<SK>();
    __half2 sc[G][2], zq[G][2], bi[G][2];
#pragma unroll
    for (int gr = 0; gr < G; gr++) {
        // (ss, zs), (sz, zz) of the rows' second-order block (SK = 1, 4: set per row)
        float2 s01 = make_float2(0.f, 0.f), s23 = s01;
        if constexpr (sk_rec_s2<SK>())
            s01 = __half22float2(bits_h2(o.s2[gr].x)), s23 = __half22float2(bits_h2(o.s2[gr].y));
        if constexpr (stat_fold<WB, SK>() && SPQR_MMA_PROBE != 2) {
            direct_stats_folded<WB, SK>(p, L, o.e[2 * gr], o.e[2 * gr + 1], s01, s23, sc[gr],
                                        bi[gr]);
            zq[gr][0] = sc[gr][0], zq[gr][1] = sc[gr][1]; // (not read by the direct decode)
        } else {
            mma_stats_rows<WB, SK>(p, L, o.e + 2 * gr, o.s2 + (SK == 4 ? 2 * gr : 0), s01, s23,
                                   sc[gr], zq[gr], bi[gr]);
        }
    }
    // tiles 0, 1 take group 0, tiles 2, 3 group G − 1
    mma_tile<WB, NH, SK, Act, OS, 0>(o, x, magic, zq[0], sc[0], bi[0], acc);
    mma_tile<WB, NH, SK, Act, OS, 1>(o, x, magic, zq[0], sc[0], bi[0], acc);
    mma_tile<WB, NH, SK, Act, OS, 2>(o, x, magic, zq[G - 1], sc[G - 1], bi[G - 1], acc);
    mma_tile<WB, NH, SK, Act, OS, 3>(o, x, magic, zq[G - 1], sc[G - 1], bi[G - 1], acc);
#endif
}

} // namespace
} // namespace spqr_cu
