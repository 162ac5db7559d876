// read_bw.cu — how fast can an H100 read? A microbenchmark for bench/NOTES.md ("ceilings"): the
// copy bandwidth that bench_gpu quotes counts read + written bytes; this measures pure reads with
// the access patterns of the tensor-core kernel (one stream per warp, a tile of 32·WB words read as
// WB coalesced 4-byte loads per lane, DEPTH tiles in flight per warp) against a plain grid-stride
// 16-byte-per-lane read, and the same warp streams fed by the copy engine (TMA bulk copies into a
// shared-memory ring, bench/NOTES.md v6n). Build: nvcc -O3 -arch=sm_90 -std=c++17 -o read_bw
// read_bw.cu; run: ./read_bw, or ./read_bw --floor BYTES... (below).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <cuda_runtime.h>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));                               \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

// every lane: UNROLL independent 16-byte loads per step, grid-stride
// WAIT (with PDL, --floor's fourth and fifth methods): 1: griddepcontrol.wait before any load, as
// a kernel must that reads what the call before it writes; 2: after the first step's loads are
// issued (a kernel that loads what does not depend on the call before, then waits for its input)
template <int UNROLL, bool PDL = false, int WAIT = 0>
__global__ void read_flat(const uint4 *a, uint64_t n, uint32_t *sink) {
#if __CUDA_ARCH__ >= 900
    // PDL (--floor's third method): the next call may launch at once, and this one reads without
    // waiting for the call before it (griddepcontrol.wait only before the sink's write)
    if constexpr (PDL) asm volatile("griddepcontrol.launch_dependents;\n" ::);
    if constexpr (PDL && WAIT == 1) asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
    uint32_t h = 0;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x;
    if constexpr (WAIT == 2) { // the first step loaded, then the wait, then consumed
        if (i + (UNROLL - 1) * stride < n) {
            uint4 v[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; u++) v[u] = __ldg(a + i + u * stride);
#if __CUDA_ARCH__ >= 900
            asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
#pragma unroll
            for (int u = 0; u < UNROLL; u++) h ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
            i += UNROLL * stride;
        }
    }
    for (; i + (UNROLL - 1) * stride < n; i += UNROLL * stride) {
        uint4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) v[u] = __ldg(a + i + u * stride);
#pragma unroll
        for (int u = 0; u < UNROLL; u++) h ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n; i += stride) h ^= __ldg(a + i).x;
#if __CUDA_ARCH__ >= 900
    if constexpr (PDL) asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
    if (h == 0x12345678u) *sink = h;
}

// one stream per warp (the tensor-core kernel's strip-major layout): warp w reads tiles
// w·tiles_per_warp .. +tiles_per_warp − 1, tile = WB·32 words read as WB coalesced loads of one
// word per lane; DEPTH tiles in flight (a register ring).
// EXTRA: per tile also the kernel's other loads: four statistics words (of a 12-byte block per
// lane group of the tile, 48 bytes per tile, a second array) and two 16-byte x loads from a small
// buffer that stays in L1/L2.
template <int WB, int DEPTH, bool EXTRA = false>
__global__ void read_warp_tiles(const uint32_t *a, uint32_t tiles_per_warp, uint32_t *sink,
                                const uint32_t *stats = nullptr, const uint4 *x = nullptr) {
    extern __shared__ uint32_t occupancy_limiter[];
    const uint32_t lane = threadIdx.x & 31;
    const uint64_t warp = (blockIdx.x * (uint64_t)blockDim.x + threadIdx.x) >> 5;
    const uint32_t *p = a + warp * tiles_per_warp * WB * 32 + lane;
    const uint32_t *sp = stats + warp * tiles_per_warp * 12 + 3 * (lane & 3) + (lane >> 2) % 2;
    uint32_t ring[DEPTH][WB], h = 0;
#pragma unroll
    for (int d = 0; d < DEPTH; d++)
#pragma unroll
        for (int i = 0; i < WB; i++) ring[d][i] = __ldg(p + (d * WB + i) * 32);
    uint32_t m = 0;
    for (; m + DEPTH <= tiles_per_warp; m += DEPTH) {
#pragma unroll
        for (int d = 0; d < DEPTH; d++) {
#pragma unroll
            for (int i = 0; i < WB; i++) h ^= ring[d][i];
            if (m + DEPTH + d < tiles_per_warp)
#pragma unroll
                for (int i = 0; i < WB; i++)
                    ring[d][i] = __ldg(p + ((m + DEPTH + d) * WB + i) * 32);
            if constexpr (EXTRA) {
                const uint32_t mm = m + d;
                h ^= __ldg(sp + 12 * mm) ^ __ldg(sp + 12 * mm + 1) ^ __ldg(sp + 12 * mm + 6) ^
                     __ldg(sp + 12 * mm + 7);
                const uint4 *xv = x + (mm % 256) * 8 + 2 * (lane & 3);
                const uint4 x0 = __ldg(xv), x1 = __ldg(xv + 1);
                h ^= x0.x ^ x1.w;
            }
        }
    }
    if (h == 0x12345678u) *sink = h + occupancy_limiter[0];
}

// one stream per warp read by the copy engine: lane 0 keeps STAGES bulk copies (cp.async.bulk,
// CHUNK bytes each, consecutive chunks of the warp's range) in flight into a shared-memory ring,
// one mbarrier per slot; the warp waits for each slot, reads one word per lane and refills it.
template <int STAGES>
__global__ void read_warp_bulk(const uint8_t *a, uint32_t chunk, uint32_t chunks_per_warp,
                               uint32_t *sink) {
#if __CUDA_ARCH__ >= 900
    extern __shared__ __align__(128) uint8_t ring_all[];
    __shared__ __align__(8) uint64_t bars[32][STAGES];
    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint64_t gwarp = (blockIdx.x * (uint64_t)blockDim.x + threadIdx.x) >> 5;
    const uint8_t *src = a + gwarp * chunks_per_warp * chunk;
    uint8_t *ring = ring_all + (uint64_t)warp * STAGES * chunk;
    const uint32_t ring_s = (uint32_t)__cvta_generic_to_shared(ring);
    const uint32_t bar0 = (uint32_t)__cvta_generic_to_shared(&bars[warp][0]);
    if (lane == 0) {
        for (int k = 0; k < STAGES; k++)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar0 + 8 * k));
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncwarp();
    auto issue = [&](uint32_t c, int k) {
        if (lane == 0 && c < chunks_per_warp) {
            asm volatile(
                "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar0 + 8 * k),
                "r"(chunk)
                : "memory");
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], "
                         "[%1], %2, [%3];\n" ::"r"(ring_s + k * chunk),
                         "l"(src + (uint64_t)c * chunk), "r"(chunk), "r"(bar0 + 8 * k)
                         : "memory");
        }
    };
    for (int k = 0; k < STAGES; k++) issue(k, k);
    uint32_t h = 0;
    for (uint32_t c = 0; c < chunks_per_warp; c++) {
        const int k = c % STAGES;
        const uint32_t parity = (c / STAGES) & 1;
        asm volatile("{\n\t.reg .pred P1;\n\tLAB_WAIT:\n\t"
                     "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n\t"
                     "@P1 bra DONE;\n\tbra LAB_WAIT;\n\tDONE:\n\t}\n" ::"r"(bar0 + 8 * k),
                     "r"(parity)
                     : "memory");
        for (uint32_t o = 4 * lane; o < chunk; o += 128)
            h ^= *reinterpret_cast<const uint32_t *>(ring + k * chunk + o);
        __syncwarp();
        issue(c + STAGES, k);
    }
    if (h == 0x12345678u) *sink = h;
#endif
}

template <typename K, typename... A>
static double time_kernel(K k, int blocks, int threads, double bytes, A... args) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    k<<<blocks, threads>>>(args...);
    cudaEventRecord(e0);
    const int reps = 20;
    for (int r = 0; r < reps; r++) k<<<blocks, threads>>>(args...);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    if (cudaGetLastError() != cudaSuccess) return -1;
    return bytes * reps / (ms * 1e-3) / 1e9;
}

// --floor BYTES...: the time a pure read of exactly BYTES takes, measured as bench_gpu measures a
// matmul (median of 7 repeats of 50 calls, buffers rotated over > 200 MB so L2 does not hold
// them, one kernel per call, best of three grid sizes; launched from the host and as one CUDA
// graph, as bench_gpu --graph): no kernel that must read those bytes can
// be faster, so it bounds the speedup any kernel can reach on the shape (bench/NOTES.md v6u).
// Third method, "host, PDL": each call a programmatic dependent of the one before, which it lets
// launch at its start, reading without waiting for it: the most overlap between calls that any
// kernel could have, where a matmul must wait for its x (bench/NOTES.md v7k). Fourth, "PDL, waits
// first": the same, but each call waits for the one before (griddepcontrol.wait) before it reads
// anything. Fifth, "PDL, waits after 1st loads": each thread's first four 16-byte loads issued
// before that wait (bench/NOTES.md v7m).
static int floor_mode(int n, char **sizes) {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int sms = prop.multiProcessorCount;
    uint32_t *sink;
    CK(cudaMalloc(&sink, 4));
    printf("| bytes | launched by | buffers | best µs | GB/s | grid (blocks of 256) |\n"
           "|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const uint64_t bytes = (uint64_t)atof(sizes[i]) / 16 * 16;
        if (bytes == 0) continue;
        const int nbuf = (int)((200ull << 20) / bytes) + 2;
        uint4 *a;
        CK(cudaMalloc(&a, bytes * nbuf));
        CK(cudaMemset(a, 1, bytes * nbuf));
        constexpr int kMethods = 5;
        float best[kMethods] = {1e30f, 1e30f, 1e30f, 1e30f, 1e30f};
        int best_blocks[kMethods] = {0, 0, 0, 0, 0};
        cudaStream_t st;
        CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
        for (int bps : {2, 4, 8})
            for (int method = 0; method < kMethods; method++) {
                const int blocks = sms * bps, graph = method == 1;
                auto calls = [&](cudaStream_t s) {
                    for (int c = 0; c < 50; c++) {
                        const uint4 *src = a + (bytes / 16) * (c % nbuf);
                        if (method >= 2) {
                            cudaLaunchAttribute at[1];
                            at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
                            at[0].val.programmaticStreamSerializationAllowed = 1;
                            cudaLaunchConfig_t lc = {};
                            lc.gridDim = dim3(blocks), lc.blockDim = dim3(256), lc.stream = s;
                            lc.attrs = at, lc.numAttrs = 1;
                            auto k = method == 2   ? read_flat<4, true, 0>
                                     : method == 3 ? read_flat<4, true, 1>
                                                   : read_flat<4, true, 2>;
                            (void)cudaLaunchKernelEx(&lc, k, src, bytes / 16,
                                                     sink); // (checked after the runs)
                        } else {
                            read_flat<4><<<blocks, 256, 0, s>>>(src, bytes / 16, sink);
                        }
                    }
                };
                cudaGraph_t g = nullptr;
                cudaGraphExec_t ge = nullptr;
                if (graph) { // the 50 calls as one CUDA graph (bench_gpu --graph)
                    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
                    calls(st);
                    CK(cudaStreamEndCapture(st, &g));
                    CK(cudaGraphInstantiate(&ge, g, 0));
                }
                cudaEvent_t e0, e1;
                cudaEventCreate(&e0), cudaEventCreate(&e1);
                float t[7];
                for (int r = 0; r < 8; r++) {
                    cudaEventRecord(e0, st);
                    if (graph)
                        CK(cudaGraphLaunch(ge, st));
                    else
                        calls(st);
                    cudaEventRecord(e1, st);
                    CK(cudaEventSynchronize(e1));
                    float ms;
                    cudaEventElapsedTime(&ms, e0, e1);
                    if (r > 0) t[r - 1] = ms * 1000.f / 50; // the first repeat warms up
                }
                std::sort(t, t + 7);
                if (t[3] < best[method]) best[method] = t[3], best_blocks[method] = blocks;
                cudaEventDestroy(e0), cudaEventDestroy(e1);
                if (ge) cudaGraphExecDestroy(ge), cudaGraphDestroy(g);
            }
        cudaStreamDestroy(st);
        CK(cudaGetLastError());
        static const char *const kMethodName[kMethods] = {"host", "CUDA graph", "host, PDL",
                                                          "host, PDL, waits first",
                                                          "host, PDL, waits after 1st loads"};
        for (int method = 0; method < kMethods; method++)
            printf("| %llu | %s | %d | %.1f | %.0f | %d |\n", (unsigned long long)bytes,
                   kMethodName[method], nbuf, best[method], bytes / (best[method] * 1e-6) / 1e9,
                   best_blocks[method]);
        CK(cudaFree(a));
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--floor")) return floor_mode(argc - 2, argv + 2);
    const uint64_t bytes = 1ull << 30;
    void *a;
    uint32_t *sink;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&sink, 4));
    CK(cudaMemset(a, 1, bytes));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int sms = prop.multiProcessorCount;
    printf("device %s, %d SMs; reading %llu MB\n", prop.name, sms,
           (unsigned long long)(bytes >> 20));
    const uint64_t n16 = bytes / 16;
    printf("| pattern | warps/SM | GB/s |\n|---|---|---|\n");
    for (int wps : {16, 32, 64})
        printf("| flat 16 B/lane, 4 loads in flight | %d | %.0f |\n", wps,
               time_kernel(read_flat<4>, sms * wps / 8, 256, (double)bytes, (const uint4 *)a, n16,
                           sink));
        // warp-tile streams: total warps = sms · wps; each reads bytes / warps
#define WT(WB, D)                                                                                  \
    for (int wps : {24, 32, 48, 64}) {                                                             \
        const uint64_t warps = (uint64_t)sms * wps;                                                \
        const uint32_t tpw = (uint32_t)(bytes / 4 / (WB * 32) / warps);                            \
        const double b = (double)tpw * warps * WB * 128;                                           \
        printf("| warp streams, tile %d x 128 B, %d tiles in flight | %d | %.0f |\n", WB, D, wps,  \
               time_kernel(read_warp_tiles<WB, D>, (int)(warps / 8), 256, b, (const uint32_t *)a,  \
                           tpw, sink, (const uint32_t *)nullptr, (const uint4 *)nullptr));         \
    }
    // the kernel's geometry: 3 blocks of 8 warps per SM (held there by 70 KB of shared memory
    // each), grids of 1, 2, 2.26 (896 blocks: 28672 rows at 4 warps per strip) and 4.5 waves
    CK(cudaFuncSetAttribute(read_warp_tiles<4, 2, false>,
                            cudaFuncAttributeMaxDynamicSharedMemorySize, 70 << 10));
    CK(cudaFuncSetAttribute(read_warp_tiles<4, 2, true>,
                            cudaFuncAttributeMaxDynamicSharedMemorySize, 70 << 10));
    uint32_t *stats;
    uint4 *xb;
    CK(cudaMalloc(&stats, bytes / 8));
    CK(cudaMalloc(&xb, 1 << 16));
    CK(cudaMemset(stats, 3, bytes / 8));
    CK(cudaMemset(xb, 5, 1 << 16));
    for (int extra = 0; extra < 2; extra++)
        for (int blocks : {sms * 3, sms * 6, 896, 1792}) {
            const uint64_t warps = (uint64_t)blocks * 8;
            const uint32_t tpw = (uint32_t)(bytes / 4 / 128 / warps);
            const double b = (double)tpw * warps * (512 + (extra ? 48 : 0));
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0), cudaEventCreate(&e1);
            auto k = extra ? read_warp_tiles<4, 2, true> : read_warp_tiles<4, 2, false>;
            k<<<blocks, 256, 70 << 10>>>((const uint32_t *)a, tpw, sink, stats, xb);
            cudaEventRecord(e0);
            for (int r = 0; r < 20; r++)
                k<<<blocks, 256, 70 << 10>>>((const uint32_t *)a, tpw, sink, stats, xb);
            cudaEventRecord(e1);
            CK(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            printf("| 3 blocks/SM, %d blocks (%.2f waves), tile 4 x 128 B%s | 24 | %.0f |\n",
                   blocks, blocks / (3.0 * sms), extra ? " + stats + x loads" : "",
                   b * 20 / (ms * 1e-3) / 1e9);
        }
    // the copy engine instead of loads: per-warp rings of bulk copies (3 blocks of 8 warps per SM)
    for (int stages : {2, 4, 8}) {
        auto k = stages == 2   ? read_warp_bulk<2>
                 : stages == 4 ? read_warp_bulk<4>
                               : read_warp_bulk<8>;
        for (uint32_t chunk : {512u, 1024u, 2048u, 4096u, 8192u}) {
            const size_t smem = (size_t)8 * stages * chunk;
            if (smem > 70u << 10) continue;
            CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 70 << 10));
            const int blocks = sms * 3;
            const uint64_t warps = (uint64_t)blocks * 8;
            const uint32_t cpw = (uint32_t)(bytes / chunk / warps);
            const double b = (double)cpw * warps * chunk;
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0), cudaEventCreate(&e1);
            k<<<blocks, 256, smem>>>((const uint8_t *)a, chunk, cpw, sink);
            cudaEventRecord(e0);
            for (int r = 0; r < 20; r++)
                k<<<blocks, 256, smem>>>((const uint8_t *)a, chunk, cpw, sink);
            cudaEventRecord(e1);
            CK(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            printf("| warp bulk copies (TMA), %u B each, %d in flight | 24 | %.0f |\n", chunk,
                   stages, b * 20 / (ms * 1e-3) / 1e9);
        }
    }
    WT(3, 2)
    WT(4, 2)
    WT(4, 3)
    WT(4, 4)
    WT(8, 2)
    CK(cudaDeviceSynchronize());
    return 0;
}
