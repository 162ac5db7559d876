// mma_layout.cuh — the tiled layout of the tensor-core kernel (v6, mma_kernel.cuh): where a
// lane's codes and statistics sit in a tile record. Shared by the kernel and the upload kernels
// that build the layout (mma_upload.cuh). See bench/NOTES.md "v6".
//
// Tiled layout (built on the device at upload from the stored sections: the same bytes up to
// padding to whole tiles and 16-byte records, with each strip's stat2 pairs copied into its
// records; the stored codes and first-order statistics are then released, and stat2 too where
// the records hold it):
//   strip S = rows 16S..16S+15, macro tile M = stored columns 64M..64M+63. In a warp's 16 x 64
//   macro tile, lane l = 4g + t owns rows g and g+8 of the strip and the 16 columns
//   64M + 16t .. +15 ("its chunk"), i.e. 32 codes, held as 16 pairs. mma k-slots are mapped so
//   that tile j (0..3) of the macro tile gives lane t the columns 16t + 4j .. 16t + 4j + 3 of its
//   own chunk: A registers of tile j are pairs 4j + (0: row g, cols 4j,4j+1; 1: row g+8, same;
//   2: row g, cols 4j+2,4j+3; 3: row g+8, same), and the B (x) registers are x[16t + 4j .. +3],
//   four consecutive values. So one lane's 32 weights share two (scale, zero) pairs (one per row;
//   β2 >= 16 groups never split a chunk), decoded once; with β2 = 8, four (tiles 0-1 of group
//   2t of the macro tile, tiles 2-3 of group 2t + 1).
//   Codes: the lane's 16 pairs as two bit streams, first codes (A) and second codes (B), each
//   16·w bits; bit k of stream A is bit (k mod 16) of word k / 16, stream B the same bit + 16.
//   Pair p sits at bit p·w of both streams, so (word >> p·w mod 16) & (mask | mask << 16) | 0x6400
//   6400 is the fp16 pair (1024 + qA, 1024 + qB) — one SHF + one LOP3 (two more where a pair
//   straddles two words: w = 5, 6, 7; w = 4 shifts once per word for four pairs, with the odd
//   pairs read as 64 + q: code_pair). w = 3 is laid out otherwise (SPQR_MMA_W3S, code_bit:
//   five pairs per word at bits 1, 4, 7, 10, 13 of each half, pair 15 in the three bits 0), so
//   that no pair straddles and each reads as the fp16 subnormal q·2^-17. Exactly w words per lane.
//   Tile record: everything a warp reads for macro tile (S, M) is one contiguous run of R words
//   (rec_words, a multiple of 4: SPQR_MMA_REC_ALIGN) at (S·mtiles + M)·R, a strip's records
//   contiguous:
//   - words [0, 32·w): code word i of lane l at 32·i + l, so each of the lane's w loads is one
//     coalesced 128-byte warp access;
//   - then the first-order statistics of the tile's tgpt = max(1, 64/β2) groups (the groups of
//     columns 64M.., in order; with β2 > 64 a group's block repeats in each of its tiles), one
//     block of s words each (s <= 8): entry r (row 16S + r) = qs | qz << s at bit
//     2s·stat_slot(r) of the block (straddling allowed; stat_slot puts rows g and g + 8 side by
//     side); s = 16: 16 words, word stat_slot(r) = scale_f16 | zero_f16 << 16;
//   - for s-bit statistics with β1 >= 8 (a strip lies in one second-order block, or two), at word
//     rec_s2 (even; a multiple of 4 where β2 = 8, so that a lane's two groups' pairs are one
//     16-byte load) the tgpt stat2 pairs (ss | zs << 16, sz | zz << 16) of the strip's block;
//     with β1 = 8 those of its first block (rows 0-7), then the tgpt of its second (rows 8-15).
//   Before records (session 5, bench/NOTES.md v6l) the statistics and stat2 were read from their
//   own arrays: the loads alone then reached only 64 % of copy bandwidth, 90 % without them.
//   Rows past the end are code 0 and entry 0 (finite statistics, never written out); columns past
//   the end meet x = 0.
// x: prep_xh_kernel writes xh[b][c] = x[b][perm[c]] (the activation type, zeros up to 64·mtiles)
// once per call; lane g reads vector min(g, nb − 1) (the mma's n = g column; columns past nb give
// outputs nobody reads), 32 bytes per tile.
// fp16 range: weights are decoded in fp16, so upload checks |scale|·(2^w − 1) + |scale·zero| <
// 60000 for every group and keeps the stored layout (generic kernel) otherwise.
#pragma once
#include "gpu_common.cuh"

namespace spqr_cu {

// SPQR_MMA_W3S (1, the library's; 0: a measurement build): w = 3 codes at half-word bits 1, 4, 7,
// 10, 13 of each code word (pairs 5i .. 5i + 4 in word i), pair 15's three bits at bit 0 of words
// 0, 1 and 2, decoded without an offset (code_pair, bench/NOTES.md v6v); 0: the bit streams
// below, as for every other w. SPQR_MMA_W2S: w = 2 decoded without an offset too (its layout is
// the bit streams').
#ifndef SPQR_MMA_W3S
#define SPQR_MMA_W3S 1
#endif
#ifndef SPQR_MMA_W2S
#define SPQR_MMA_W2S 1
#endif
// Tile records are padded to a multiple of SPQR_MMA_REC_ALIGN words: 4 (16 bytes, the least the
// 16-byte statistics loads allow) or 8 (32 bytes, every record on a sector; a measurement build).
// Same call, H100, batch 1, 8 / 4: w4 28672x8192 55.3 / 53.8 µs, 8192x28672 53.6 / 52.7; w3 1 %
// within ±0.3 µs (4096² 9.1 / 8.7, 8192² 18.4 / 18.3, 28672x8192 49.8 / 50.1); records 3.3 % (w3)
// and 2.6 % (w4) smaller (bench/NOTES.md v7d).
#ifndef SPQR_MMA_REC_ALIGN
#define SPQR_MMA_REC_ALIGN 4
#endif
static_assert(SPQR_MMA_REC_ALIGN == 4 || SPQR_MMA_REC_ALIGN == 8, "records: 16 or 32 bytes");
// Widths decoded without an offset: a w-bit field at mantissa bits 10 − w .. 9 of an fp16 whose
// exponent bits are 0 is the subnormal q·2^-(14 + w), so weights are (q·2^-(14 + w))·fp16(scale·
// 2^(14 + w)) + fp16(−scale·zero), one HFMA2 per pair (mma_kernel.cuh, code_pair); upload keeps
// |scale|·2^(14 + w) < 65504 (fp16_range_kernel).
__host__ __device__ constexpr bool direct_width(int wb) {
    return (wb == 3 && SPQR_MMA_W3S) || (wb == 2 && SPQR_MMA_W2S);
}

// Batch 1 with one kernel (launch_mma.cuh, where it says when): the matmul permutes x into each
// block's shared memory itself instead of prep_xh_kernel, for stored strides up to
// SPQR_MMA_XSMEM_MAXCOLS columns (kXsmemChunks chunks of 8 per thread), in kernels of their own
// (mma_kernel's XS; the others keep the read-only x loads). SPQR_MMA_XSMEM 0: never (a
// measurement build).
#ifndef SPQR_MMA_XSMEM
#define SPQR_MMA_XSMEM 1
#endif
// SPQR_MMA_GRAPH_TRIGGER 1: a batch-1..16 call captured into a CUDA graph whose grid is one wave,
// and either fills 90 % of the resident warps or has at most 2^22 weights, lets the kernels after
// it launch once its warps have waited for their x (griddepcontrol.launch_dependents after
// griddepcontrol.wait), not at its end: the next call's prep then reads its permutation and the
// next matmul pulls its first tiles towards L2 while this one runs; both wait for it before they
// read what it writes. H100 graphs, w3 1 % batch 1: 8192² 16.6 → 15.7 µs, 2048² 5.1 → 4.5, the
// shared 27M model's decode step 213.8 → 177.6. Triggered at the kernel's start, the calls after
// it launched one after another and sat on the SMs (4096x11008 13.0 → 19.0 µs); after the wait,
// on grids that leave room beside them, the next call's blocks still slowed long calls
// (4096x11008 13.1 → 15.2, 11008x4096 13.2 → 14.9), hence the two conditions (launch_mma.cuh).
// From the host an early trigger made calls erratic (8192² once 54 µs, bench/NOTES.md v7a), so
// it is kept to graphs (bench/NOTES.md v7p). 0: never (a measurement build).
#ifndef SPQR_MMA_GRAPH_TRIGGER
#define SPQR_MMA_GRAPH_TRIGGER 1
#endif
#ifndef SPQR_MMA_XSMEM_MAXCOLS
#define SPQR_MMA_XSMEM_MAXCOLS 2048
#endif
#ifndef SPQR_MMA_XSMEM_MAXWEIGHTS // ... and rows · stride up to this
#define SPQR_MMA_XSMEM_MAXWEIGHTS 4194304
#endif

// Outlier rounds (mma_kernel.cuh OS = 8, bench/NOTES.md v6w): built at upload by make_rounds
// (spqr_kernels.cu) and run by the OS = 8, 9 kernels for batch 1 (1) or 1-16 (2); 0: neither, the
// kernels walk the CSR outliers (a measurement build).
#ifndef SPQR_MMA_ROUNDS
#define SPQR_MMA_ROUNDS 2
#endif

// Whether a call of nb vectors adds the tensor's outliers by its rounds (on the fused path):
// batch 1, and batch 2-16 while the batch's x (nb·cols fp16) fits 256 KB, an SM's L1, where a
// round's gathers find it. Same call, H100, w3 1 %, µs rounds / CSR walk or pass: batch 8 8192²
// 29.9 / 35.8, 28672x8192 80.8 / 88.0, but 8192x28672 (458 KB of x) 122.6 / 84.1; batch 4
// 8192x28672 (229 KB) 74.7 / 86.6 (bench/NOTES.md v6w).
// Batch 9-16 (the OS = 9 kernels with NH = 2, outlier_round_n2) gather from xt, all 16 vectors
// whatever nb, so while 16·cols <= 131072 (cols <= SPQR_MMA_ROUNDS16_MAX_COLS; 0: never, the CSR
// pass or tail as before). H100, w3 1 %, batch 16, µs CSR → rounds (same call): 28672x8192 104.1
// → 92.3, 11008x4096 32.4 → 22.8, 8192² 36.6 → 30.3; xt paired (another call): 92.3 → 85.5;
// with cols past 8192 (paired, same call) 4096x11008 24.7 → 24.7, 8192x28672 98.2 → 111.4
// (bench/NOTES.md v7b).
// Past 8192 columns, tensors whose statistics take the SK = 0 kernels (s-bit, β1 >= 16, β2 >= 16)
// run their batch 9-16 rounds inside the tile loop instead (the OS = 10 kernels, mma_outliers.cuh;
// SPQR_MMA_ROUNDS16_LOOP 0: the CSR rows after the tiles, or the pass, as before; a measurement
// build).
constexpr uint64_t kRoundsMaxBatchCols = 131072;
#ifndef SPQR_MMA_ROUNDS16_MAX_COLS
#define SPQR_MMA_ROUNDS16_MAX_COLS (kRoundsMaxBatchCols / 16)
#endif
#ifndef SPQR_MMA_ROUNDS16_LOOP
#define SPQR_MMA_ROUNDS16_LOOP 1
#endif
// The statistics kind of a tiled tensor (mma_decode.cuh SK): fp16 (2), s-bit with β1 >= 16 (0, or
// 3 where β2 = 8), or any β1 (1, or 4 where β2 = 8; upload tiles β2 = 8 only for w <= 4,
// mma_tiled_shape).
inline int mma_stat_kind(const Params &p) {
    return p.sbits == 16      ? 2
           : p.log2beta2 == 3 ? (p.log2beta1 < 4 ? 4 : 3)
           : p.log2beta1 < 4  ? 1
                              : 0;
}
inline bool mma_rounds16_loop(const spqr_gpu_tensor *t, int nb) {
    return SPQR_MMA_ROUNDS16_LOOP && nb > 8 && t->p.cols > SPQR_MMA_ROUNDS16_MAX_COLS &&
           mma_stat_kind(t->p) == 0;
}
// Batch 2-8 rounds gather their x from xt (the transposed copy that batch 9-16 makes;
// outlier_round_n) instead of xh at batch 8, and wherever nb·cols is past kRoundsMaxBatchCols (so
// at any cols). Same call, H100, w3 1 %, µs xh (or the CSR pass past the limit) → xt: batch 8
// 28672x8192 77.8 → 70.6, 8192² 25.5 → 24.6, 4096x11008 22.6 → 19.9, 8192x28672 (the pass) 81.7
// → 69.3; batch 5 and 6 8192x28672 (the pass) 78.8 → 66.0, 79.9 → 67.1; but with xh in reach xt is
// slower below batch 8 (batch 5 8192² 22.4 → 25.0, 4096x11008 18.3 → 19.9; batch 4 8192² 21.7
// → 24.7): writing xt costs more than it saves there (bench/NOTES.md v7e). SPQR_MMA_ROUNDS_XT 0:
// never (a measurement build).
#ifndef SPQR_MMA_ROUNDS_XT
#define SPQR_MMA_ROUNDS_XT 1
#endif
// SPQR_MMA_XT_WIDE_BATCH: also from this batch on where cols > SPQR_MMA_XT_WIDE_COLS (x then
// past L1 at batch 4: same call, H100, w3 1 % batch 4 8192x28672 70.2 → 66.2 µs, bench/NOTES.md
// v7j; batch 2-3 not measured there). 0: not (a measurement build).
#ifndef SPQR_MMA_XT_WIDE_BATCH
#define SPQR_MMA_XT_WIDE_BATCH 4
#endif
#ifndef SPQR_MMA_XT_WIDE_COLS
#define SPQR_MMA_XT_WIDE_COLS 16384
#endif
inline bool mma_rounds_xt(const spqr_gpu_tensor *t, int nb) {
    return SPQR_MMA_ROUNDS_XT && nb >= 2 && nb <= 8 &&
           (nb == 8 || (uint64_t)nb * t->p.cols > kRoundsMaxBatchCols ||
            (SPQR_MMA_XT_WIDE_BATCH > 0 && nb >= SPQR_MMA_XT_WIDE_BATCH &&
             t->p.cols > SPQR_MMA_XT_WIDE_COLS));
}
inline bool mma_rounds(const spqr_gpu_tensor *t, int nb) {
    return SPQR_MMA_ROUNDS && t->rounds &&
           (nb == 1 ||
            (SPQR_MMA_ROUNDS >= 2 && nb <= 8 &&
             ((uint64_t)nb * t->p.cols <= kRoundsMaxBatchCols || mma_rounds_xt(t, nb))) ||
            (SPQR_MMA_ROUNDS >= 2 && nb > 8 &&
             (t->p.cols <= SPQR_MMA_ROUNDS16_MAX_COLS || mma_rounds16_loop(t, nb))));
}

// Whether a tensor of these dimensions is tiled (then kept tiled where its statistics suit the
// fp16 decode, make_tiled): β2 >= 16 (a lane's chunk of 16 columns within one group), or β2 = 8
// (two groups a chunk: the SK = 3 and 4 kernels, mma_decode.cuh) for w = 2-4 with s-bit
// statistics, which SPQR_MMA_BETA2_8 = 0 leaves in the stored layout (a measurement build; bench/
// NOTES.md v7c). β2 = 8 otherwise (fp16 statistics, w > 4), and β2 < 8, keep the stored layout.
#ifndef SPQR_MMA_BETA2_8
#define SPQR_MMA_BETA2_8 1
#endif
inline bool mma_tiled_shape(const Params &p) {
    return p.beta2 >= 16 || (SPQR_MMA_BETA2_8 && p.beta2 == 8 && p.wbits <= 4 && p.sbits != 16);
}

// The second-order blocks whose stat2 pairs a tile record holds (make_tiled sets rec_s2 where
// it holds any): one for β1 >= 16, the strip's two for β1 = 8 (SPQR_MMA_S2_REC8 = 0: none below
// β1 = 16, a measurement build), each a run of tgpt pairs; and the word of row r's (r = 0..15 in
// the strip) pair of the tile's group gi.
#ifndef SPQR_MMA_S2_REC8
#define SPQR_MMA_S2_REC8 1
#endif
__host__ __device__ inline uint32_t rec_s2_blocks(const Params &p) {
    return p.sbits == 16 || p.log2beta1 < (SPQR_MMA_S2_REC8 ? 3u : 4u) ? 0
           : p.log2beta1 == 3                                          ? 2
                                                                       : 1;
}
__host__ __device__ inline uint32_t rec_s2_word(const Params &p, uint32_t r, uint32_t gi) {
    return p.rec_s2 + (p.log2beta1 == 3 ? 2 * p.tgpt * (r >> 3) : 0) + 2 * gi;
}

constexpr int kMmaWarps = 8;
constexpr int kMmaThreads = kMmaWarps * 32;
// chunks of 8 columns per thread that the XS gather covers (SPQR_MMA_XSMEM_MAXCOLS)
constexpr int kXsmemChunks = (SPQR_MMA_XSMEM_MAXCOLS + 8 * kMmaThreads - 1) / (8 * kMmaThreads);
constexpr uint32_t kMagic2 = 0x64006400u;    // fp16 pair (1024, 1024)
constexpr uint32_t kMagic2_64 = 0x54005400u; // fp16 pair (64, 64): w = 4 odd pairs (code_pair)

// Position of a lane's pair p (0..15), half h (0 = stream A) in its strip and chunk.
__host__ __device__ __forceinline__ uint32_t tile_row(uint32_t g, uint32_t p) {
    return g + 8 * (p & 1);
}
__host__ __device__ __forceinline__ uint32_t tile_col(uint32_t t, uint32_t p, uint32_t h) {
    return 16 * t + 4 * (p >> 2) + 2 * ((p >> 1) & 1) + h;
}

#ifndef SPQR_MMA_PAIRSTATS // 0: entries in row order (a measurement build)
#define SPQR_MMA_PAIRSTATS 1
#endif
// Entry slot of row r (0..15 in the strip) in a statistics block: rows g and g + 8, the two rows
// of lane (g, t), side by side (slots 2g, 2g + 1), so a lane's two entries are one 4s-bit field
// (at most two words, one funnel shift; fp16 statistics: one 8-byte load).
__host__ __device__ __forceinline__ uint32_t stat_slot(uint32_t r) {
    return SPQR_MMA_PAIRSTATS ? 2 * (r & 7) + (r >> 3) : r;
}

// Where bit b of the w-bit code of a lane's pair p (0..15) lies in the lane's code words, the
// one definition of the codes' layout (upload, dequantize and code_pair all read it): word
// code_word, bit code_bit of the half (stream A; stream B is the same bit + 16). w = 3
// (SPQR_MMA_W3S): pair p < 15 at bit 1 + 3·(p mod 5) of word p / 5, pair 15's bit b at bit 0 of
// word b; otherwise pair p at bit p·w of the stream (word k / 16, bit k mod 16 for k = p·w + b).
__host__ __device__ constexpr uint32_t code_word(uint32_t wb, uint32_t p, uint32_t b) {
    return SPQR_MMA_W3S && wb == 3 ? (p == 15 ? b : p / 5) : (p * wb + b) >> 4;
}
__host__ __device__ constexpr uint32_t code_bit(uint32_t wb, uint32_t p, uint32_t b) {
    return SPQR_MMA_W3S && wb == 3 ? (p == 15 ? 0 : 1 + 3 * (p % 5) + b) : (p * wb + b) & 15;
}

} // namespace spqr_cu
