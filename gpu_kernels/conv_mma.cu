// Implicit-GEMM convolution on NHWC FP16 or INT8 with tensor cores (sm_80+):
//   GEMM M = N*P*Q (output pixels), N = K (output channels), K = R*S*C (c fastest);
//   A (im2col of x) is gathered on the fly, B is the KRSC weight, both K-contiguous ("NT").
// cp.async multi-stage pipeline (zero-filling padding and tails), ldmatrix into registers,
// mma.sync m16n8k16 FP16 with FP32 accumulators, or (-DINT8) m16n8k32 s8 with s32 accumulators
// dequantised per output channel (dq[k] = input scale x weight scale[k]). Fused epilogue (bias,
// activation, residual in FP16 or INT8) writing FP16 or INT8 (requantised by 1/output scale), or
// FP32 partial sums for split-K (blockIdx.z; the last CTA of a tile reduces them).
// -DSTREAMK: a grid of one CTA per resident slot shares all tiles' k-tiles out evenly
// (stream-K); a tile cut into pieces is finished by its last piece (conv_tile, Piece).
// Both element types share every byte of the data path: a 16-byte chunk is 8 halves or 16 int8,
// and the m16n8k32 s8 fragments have the same byte layout as the m16n8k16 f16 ones, so one
// ldmatrix addressing serves both.
// Needs C % 8 (FP16) or C % 16 (INT8) == 0 (one 16-byte copy never straddles two filter taps)
// and groups == 1, except in bundles: a grouped convolution whose groups are too narrow for the
// tensor cores runs as dense convolutions of m groups at a time (a "bundle", i[15] = its output
// channels; lowering/conv.py groups_per_bundle): output channels [b * bundle, (b + 1) * bundle)
// reduce over input channels [b * C, (b + 1) * C) of x (C = the bundle's m groups' input
// channels, xcs = all of x's), weights [K][R][S][C] zero outside each output channel's own
// group. A tile never straddles two bundles (bundle % BN == 0), so its A rows start at channel
// (block_n / bundle) * C; the rest of the kernel is the dense one. Tile shape comes from -D
// options: one compiled module per tactic (gpu_kernels/tactics.py). Below sm_80 the same entry
// point runs a plain SIMT loop over its tile (correct, slow): the host picks conv_direct there
// instead.
// -DD2S: the GEMM is a kernel == stride transposed convolution (U-Net's 2x2 / 2) lowered as a
// 1x1 convolution to F*F*Ko columns, and the epilogue writes each column straight into the
// F-times upsampled output (d2s.cuh) instead of leaving a depth-to-space copy to a second
// kernel. A compile-time switch: the ordinary build's epilogue is unchanged.
#include "common.cuh"

#ifdef INT8
typedef i8_t elem_t;
#define EPC 16    // elements per 16-byte chunk
#define MMA_K 32  // k of one mma.sync
#define CONV_MMA conv_mma_i8
#else
typedef half_t elem_t;
#define EPC 8
#define MMA_K 16
#define CONV_MMA conv_mma_f16
#endif

#ifndef BM
#define BM 64
#endif
#ifndef BN
#define BN 64
#endif
#ifndef WARPS_M
#define WARPS_M 2
#endif
#ifndef WARPS_N
#define WARPS_N 2
#endif
#ifndef STAGES
#define STAGES 3
#endif
#ifndef BK
#define BK 32
#endif
#define CPR (BK / EPC)  // 16-byte chunks per smem row
#define NT (WARPS_M * WARPS_N * 32)
#define WTM (BM / WARPS_M)
#define WTN (BN / WARPS_N)
#define MI (WTM / 16)
#define NI (WTN / 8)
#define LDS (BK + EPC)  // +16 bytes per row: ldmatrix rows land in distinct banks
#define A_CH (BM * CPR / NT)
#define B_CH (BN * CPR / NT)

static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile must be a multiple of 16x16");
static_assert(A_CH >= 1 && B_CH >= 1, "too many threads for the tile");
static_assert((BM * CPR) % NT == 0 && (BN * CPR) % NT == 0, "uneven loader");
static_assert(NT % CPR == 0 && BK % MMA_K == 0, "bad BK");

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    unsigned r;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}

// Residual and output element access: FP16, or INT8 with a scale (residual) / an inverse
// scale (output).
__device__ __forceinline__ float ld_res(const void* r, i64 i, int is_i8, float scale) {
    return is_i8 ? (float)((const i8_t*)r)[i] * scale : h2f(((const half_t*)r)[i]);
}
__device__ __forceinline__ void st_out(void* y, i64 i, float v, int is_i8, float inv) {
    if (is_i8) ((i8_t*)y)[i] = f2q(v * inv);
    else ((half_t*)y)[i] = f2h(v);
}

// Where the epilogue stores GEMM output (row m, column k) in y, in elements: OUT_AT(m, k), and
// OUT_AT8(m, k0, j) for column k0 + j of a chunk of 8 (k0 a multiple of 8). Ordinarily row m of
// a [M][ycs] matrix (ycs > K: a Concat's channel slice); with -DD2S upsampled (d2s.cuh).
// Macros, so that the ordinary build compiles to the same code as before D2S existed.
#ifdef D2S
#include "d2s.cuh"
#define OUT_AT(m, k) om.at(m, k)
#define OUT_AT8(m, k0, j) om.at(m, (k0) + (j))
#define OUT_CHUNKS om.chunks_of_8()
#else
#define OUT_AT(m, k) ((i64)(m) * cv.ycs + (k))
#define OUT_AT8(m, k0, j) ((i64)(m) * cv.ycs + (k0) + (j))
#define OUT_CHUNKS true
#endif

// i = {N,H,W,C, K,P,Q, R,S, sh,sw, ph,pw, dh,dw, groups (bundle, or D2S: F), act, res_after,
//      xcs, ycs,
//      rcs (ConvArgs, common.cuh), splits, res_i8, out_i8, FastDiv (multiplier, shift) by Q, P,
//      C, S}
// f = {act alpha, act beta, 1 / output scale (out_i8), residual scale (res_i8)}
// p = {x, w[K][R][S][C], bias f32 | 0, residual | 0, y, workspace f32 (split-K),
//      tile counters int32 (split-K; zero before the first launch, left zero after),
//      dq f32[K] (INT8 only: input scale x weight scale per output channel)}
// Two 256-thread CTAs of a tile up to 128 wide share an SM only with <= 128 registers a thread.
// MIN_CTAS=1 (a tactic's "_o1") gives up the second CTA for registers: with FRAG_BUFS=2 ("_f2")
// a large warp tile double-buffers its fragments instead of spilling.
#if defined(MIN_CTAS)
#define BOUNDS __launch_bounds__(NT, MIN_CTAS)
#elif NT == 256 && BN <= 128
#define BOUNDS __launch_bounds__(NT, 2)
#else
#define BOUNDS __launch_bounds__(NT)
#endif
// One CTA's piece of one output tile: the tile at (block_m, block_n), its k-tiles [kt0, kt1).
// A piece short of the whole reduction (split-K, stream-K) leaves FP32 partial sums; the last
// piece of the tile to finish adds them up in a fixed order and runs the epilogue.
struct Piece {
    int block_m, block_n, kt0, kt1;
    int tile;    // index of the tile's counter (p[6])
    int split;   // split-K: which split (blockIdx.z)
#ifdef STREAMK
    int slot;    // stream-K: this piece's partials in the workspace, BM x BN floats a slot
    int first;   // the tile's first contributing CTA, and how many contribute
    int pieces;
    i64 total;   // k-tiles of the whole grid, shared out evenly over gridDim.x CTAs
    int ktiles;
#endif
};

#ifdef STREAMK
// Stream-K: CTA c of G owns iterations [c*T/G, (c+1)*T/G) of the T = tiles x k-tiles of the
// whole GEMM, tile-major, so every CTA does the same work whatever the tile count: no partial
// last wave (ResNet-50's 28x28 layers at batch 32 are 98 tiles of 256x128 on 132 SMs). A CTA
// holds at most two partial pieces: its first (slot 2c) and its last (slot 2c + 1), so the
// workspace is 2G slots and a piece's slot follows from where its CTA's range starts.
__device__ __forceinline__ i64 sk_start(int c, i64 total) { return c * total / gridDim.x; }
__device__ __forceinline__ int sk_owner(i64 it, i64 total) {  // the CTA whose range holds it
    return (int)(((it + 1) * gridDim.x - 1) / total);
}
__device__ __forceinline__ int sk_slot(int c, int tile, const Piece& pc) {
    return sk_start(c, pc.total) >= (i64)tile * pc.ktiles ? 2 * c : 2 * c + 1;
}
#endif

__device__ __forceinline__ void conv_tile(const KArgs& a, const Piece& pc) {
    const elem_t* x = (const elem_t*)a.p[0];
    const elem_t* w = (const elem_t*)a.p[1];
    const float* bias = (const float*)a.p[2];
    const void* res = (const void*)a.p[3];
    void* y = (void*)a.p[4];
    float* ws = (float*)a.p[5];
    const int res_i8 = a.i[22], out_i8 = a.i[23];
    const float out_inv = a.f[2], res_scale = a.f[3];
    const ConvArgs cv = conv_args(a);
#ifdef D2S
    const D2sMap om(a, cv);
#endif
    const int splits = a.i[21];
    const int M = cv.N * cv.P * cv.Q;
    const int Kgemm = cv.R * cv.S * cv.C;
    const int ktiles = (Kgemm + BK - 1) / BK;
    const int kt0 = pc.kt0, kt1 = pc.kt1;
    const int block_m = pc.block_m, block_n = pc.block_n;
    const int tid = threadIdx.x;
#ifdef D2S
    const int a_c0 = 0;
#else
    const int a_c0 = cv.groups > 1 ? block_n / cv.groups * cv.C : 0;  // a bundle's channels
#endif

#if __CUDA_ARCH__ >= 900
    // At batch 1 the weights dominate the bytes and a few CTAs stream them from HBM one k-tile
    // at a time, latency-bound. Ask for this CTA's whole weight slice in one go instead: one
    // bulk L2 prefetch per output channel row (contiguous KRSC), issued by the first m-tile
    // only (the other m-tiles of this n-tile read the same rows from L2).
    if (block_m == 0 && tid < BN && block_n + tid < cv.K && kt0 < kt1) {
        const int k_end = min(Kgemm, kt1 * BK);
        const elem_t* row = w + (i64)(block_n + tid) * Kgemm + kt0 * BK;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(row),
                     "r"((k_end - kt0 * BK) * (int)sizeof(elem_t)) : "memory");
    }
#endif
#if __CUDA_ARCH__ >= 800
    extern __shared__ uint4 smem_raw[];
    // Shared memory: STAGES A tiles [BM][LDS], then STAGES B tiles [BN][LDS], as byte offsets.
    constexpr int ESZ = (int)sizeof(elem_t);
    constexpr unsigned A_STAGE = BM * LDS * ESZ, B_STAGE = BN * LDS * ESZ, ROW = LDS * ESZ;
    const unsigned smem0 = smem_addr(smem_raw), smem_b = smem0 + STAGES * A_STAGE;

    // Loader: each thread always copies the same 16-byte column (kc) of the same A and B rows.
    // Its place in the reduction, k = (r * S + s) * C + c, and every address advance by one
    // k-tile per load, incrementally: no division in the main loop, 32-bit element offsets
    // (the host keeps tensors under 2^31 elements), shared addresses computed once. With one
    // warp per scheduler (small grids at batch 1) the loop's instruction count sets its speed.
    const int kc = tid % CPR;
    const FastDiv by_q{(unsigned)a.i[24], a.i[25]}, by_p{(unsigned)a.i[26], a.i[27]};
    const FastDiv by_c{(unsigned)a.i[28], a.i[29]}, by_s{(unsigned)a.i[30], a.i[31]};
    int a_pix[A_CH], a_ih[A_CH], a_iw[A_CH];
    bool a_ok[A_CH];
    // row i of a thread is NT / CPR rows below row i - 1: shared addresses differ by constants
    constexpr unsigned ROWS_APART = (NT / CPR) * ROW;
    const unsigned a_dst = smem0 + (tid / CPR) * ROW + kc * 16;
    const unsigned b_dst = smem_b + (tid / CPR) * ROW + kc * 16;
#pragma unroll
    for (int i = 0; i < A_CH; ++i) {
        const int row = tid / CPR + i * (NT / CPR);
        const int m = block_m + row;
        a_ok[i] = m < M;
        const WindowOrigin o = window_origin(cv, pixel_of(a_ok[i] ? m : 0, cv.P, cv.Q, by_p,
                                                          by_q));
        a_ih[i] = o.ih0;
        a_iw[i] = o.iw0;
        a_pix[i] = (int)o.base + (o.ih0 * cv.W + o.iw0) * cv.xcs + a_c0;  // tap (0, 0)
    }
    int b_off[B_CH];
    bool b_ok[B_CH];
#pragma unroll
    for (int i = 0; i < B_CH; ++i) {
        const int row = tid / CPR + i * (NT / CPR);
        b_ok[i] = block_n + row < cv.K;
        b_off[i] = (block_n + row) * Kgemm + kt0 * BK + kc * EPC;
    }
    int lk = kt0 * BK + kc * EPC;  // this thread's k in the next k-tile to load
    int lc, ls, lr;
    {
        const int rs = by_c.div(lk);
        lc = lk - rs * cv.C;
        lr = by_s.div(rs);
        ls = rs - lr * cv.S;
    }
    int lih = lr * cv.dh, liw = ls * cv.dw;
    int ltap = (lih * cv.W + liw) * cv.xcs;

    auto load_next = [&](int stage) {
        const bool k_ok = lk < Kgemm;
#pragma unroll
        for (int i = 0; i < A_CH; ++i) {
            const bool ok = k_ok && a_ok[i] && (unsigned)(a_ih[i] + lih) < (unsigned)cv.H &&
                            (unsigned)(a_iw[i] + liw) < (unsigned)cv.W;
            const elem_t* src = x + (ok ? a_pix[i] + ltap + lc : 0);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(
                             a_dst + i * ROWS_APART + stage * A_STAGE), "l"(src), "r"(ok ? 16 : 0));
        }
#pragma unroll
        for (int i = 0; i < B_CH; ++i) {
            const bool ok = k_ok && b_ok[i];
            const elem_t* src = w + (ok ? b_off[i] : 0);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(
                             b_dst + i * ROWS_APART + stage * B_STAGE), "l"(src), "r"(ok ? 16 : 0));
            b_off[i] += BK;
        }
        lk += BK;
        lc += BK;
        if (lc >= cv.C) {  // into the next filter tap(s)
            do {
                lc -= cv.C;
                if (++ls == cv.S) {
                    ls = 0;
                    ++lr;
                }
            } while (lc >= cv.C);
            lih = lr * cv.dh;
            liw = ls * cv.dw;
            ltap = (lih * cv.W + liw) * cv.xcs;
        }
    };

    const int lane = tid & 31, warp = tid >> 5;
    const int wm = warp % WARPS_M, wn = warp / WARPS_M;
    // ldmatrix addresses of this thread's fragment rows (stage 0, k16 0)
    const unsigned a_frag = smem0 + (wm * WTM + (lane & 15)) * ROW + (lane >> 4) * 16;
    const unsigned b_frag =
        smem_b + (wn * WTN + (lane >> 4) * 8 + (lane & 7)) * ROW + ((lane >> 3) & 1) * 16;
#ifdef INT8
    int acc[MI][NI][4];
#else
    float acc[MI][NI][4];
#endif
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (kt0 + s < kt1) load_next(s);
        asm volatile("cp.async.commit_group;\n" ::);
    }
    // Fragments: ldmatrix into registers, double-buffered where registers allow, so the loads
    // for the next k16 step (or the next k-tile's first) are in flight during this step's
    // mma.sync instead of exposing their latency (one warp per scheduler at batch 1).
    constexpr int KS = BK / MMA_K;  // k16 steps per k-tile (even: buffer parity is per step)
#ifdef FRAG_BUFS
    constexpr int FB = FRAG_BUFS;
#else
    constexpr int FB = MI * NI <= 8 ? 2 : 1;  // bigger warp tiles would spill at 128 registers
#endif
    static_assert(KS % 2 == 0, "the fragment buffers alternate per k16 step");
    unsigned af[FB][MI][4], bf[FB][NI][2];
    auto load_frags = [&](int buf, unsigned at, unsigned bt, int k16) {
#pragma unroll
        for (int i = 0; i < MI; ++i)
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                         : "=r"(af[buf][i][0]), "=r"(af[buf][i][1]), "=r"(af[buf][i][2]),
                           "=r"(af[buf][i][3])
                         : "r"(at + i * 16 * ROW + k16 * MMA_K * ESZ));
#pragma unroll
        for (int j = 0; j < NI / 2; ++j)
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                         : "=r"(bf[buf][2 * j][0]), "=r"(bf[buf][2 * j][1]),
                           "=r"(bf[buf][2 * j + 1][0]), "=r"(bf[buf][2 * j + 1][1])
                         : "r"(bt + j * 16 * ROW + k16 * MMA_K * ESZ));
    };

    // The barrier before a k-tile's first use also ends every warp's reads of the stage that
    // load_next then overwrites: at the top of each tile (FB 1), or before the last k16 step
    // of the previous tile, where the next tile's first fragments are loaded early (FB 2).
    auto await_tile = [&]() {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(STAGES - 2));
        __syncthreads();
    };
    int read_stage = 0, write_stage = STAGES - 1;
    if (FB == 2) {
        await_tile();
        load_frags(0, a_frag, b_frag, 0);
    }
    for (int kt = kt0; kt < kt1; ++kt) {
        if (FB == 1) await_tile();
        if (kt + STAGES - 1 < kt1) load_next(write_stage);
        asm volatile("cp.async.commit_group;\n" ::);
        write_stage = write_stage == STAGES - 1 ? 0 : write_stage + 1;
        const unsigned at = a_frag + read_stage * A_STAGE, bt = b_frag + read_stage * B_STAGE;
        read_stage = read_stage == STAGES - 1 ? 0 : read_stage + 1;
#pragma unroll
        for (int k16 = 0; k16 < KS; ++k16) {
            const int cur = FB == 2 ? (k16 & 1) : 0;
            if (FB == 1) load_frags(0, at, bt, k16);
            if (FB == 2) {
                if (k16 == KS - 1) await_tile();  // the next k-tile, landed for every warp
                if (k16 + 1 < KS)
                    load_frags(cur ^ 1, at, bt, k16 + 1);
                else if (kt + 1 < kt1)
                    load_frags(cur ^ 1, a_frag + read_stage * A_STAGE,
                               b_frag + read_stage * B_STAGE, 0);
            }
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NI; ++j)
#ifdef INT8
                    asm volatile(
                        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                        : "+r"(acc[i][j][0]), "+r"(acc[i][j][1]), "+r"(acc[i][j][2]),
                          "+r"(acc[i][j][3])
                        : "r"(af[cur][i][0]), "r"(af[cur][i][1]), "r"(af[cur][i][2]),
                          "r"(af[cur][i][3]), "r"(bf[cur][j][0]), "r"(bf[cur][j][1]));
#else
                    asm volatile(
                        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                        : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]),
                          "+f"(acc[i][j][3])
                        : "r"(af[cur][i][0]), "r"(af[cur][i][1]), "r"(af[cur][i][2]),
                          "r"(af[cur][i][3]), "r"(bf[cur][j][0]), "r"(bf[cur][j][1]));
#endif
        }
    }
    asm volatile("cp.async.wait_group 0;\n" ::);
    __syncthreads();  // every warp is done with the pipeline's shared memory

    const int g = lane >> 2, t4 = lane & 3;
    // From here on the accumulators are real numbers: INT8 sums are dequantised per channel.
    float facc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
#ifdef INT8
                const int k = block_n + wn * WTN + j * 8 + 2 * t4 + (e & 1);
                facc[i][j][e] = k < cv.K ? (float)acc[i][j][e] * ((const float*)a.p[7])[k] : 0.0f;
#else
                facc[i][j][e] = acc[i][j][e];
#endif
            }
#ifdef STREAMK
    if (kt0 > 0 || kt1 < ktiles) {
        // A piece of the tile: leave its sums in its slot, in fragment order (thread tid's
        // e-th value at e * NT + tid: coalesced both ways). The tile's last piece to finish
        // adds every slot in CTA order, whichever finished last (replays give the same bits),
        // and goes on to the epilogue.
        constexpr int FRAG = MI * NI * 4;
        float* mine = ws + (i64)pc.slot * (BM * BN);
#pragma unroll
        for (int e = 0; e < FRAG; ++e) mine[e * NT + tid] = (&facc[0][0][0])[e];
        int* counters = (int*)a.p[6];
        if (!last_to_arrive(counters + pc.tile, pc.pieces)) return;
#pragma unroll
        for (int e = 0; e < FRAG; ++e) (&facc[0][0][0])[e] = 0.0f;
        for (int q = 0; q < pc.pieces; ++q) {
            const float* part = ws + (i64)sk_slot(pc.first + q, pc.tile, pc) * (BM * BN);
#pragma unroll
            for (int e = 0; e < FRAG; ++e) (&facc[0][0][0])[e] += __ldcg(part + e * NT + tid);
        }
        if (tid == 0) counters[pc.tile] = 0;  // ready for the next launch / graph replay
    }
#endif
    if (splits > 1) {
        // Split-K: write FP32 partial sums; the last CTA of this output tile to finish (a
        // counter per tile) adds them up and runs the epilogue, so no second kernel is needed.
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                const int m = block_m + wm * WTM + i * 16 + g + hf * 8;
                if (m >= M) continue;
#pragma unroll
                for (int j = 0; j < NI; ++j) {
                    const int k = block_n + wn * WTN + j * 8 + 2 * t4;
                    if (k >= cv.K) continue;
                    float* dst = ws + ((i64)pc.split * M + m) * cv.K + k;
                    dst[0] = facc[i][j][hf * 2];
                    if (k + 1 < cv.K) dst[1] = facc[i][j][hf * 2 + 1];
                }
            }
        int* counters = (int*)a.p[6];
        const int tile = pc.tile;
        if (!last_to_arrive(counters + tile, splits)) return;
        // The reduction is latency-bound (one CTA reads every split's partials through L2), so
        // each thread keeps many loads in flight: 4 outputs (float4) per pass and 8 splits (4 in
        // CTAs of 256 threads) per batch, all loads issued before any addition (more would cost registers, which every
        // launch of this kernel pays in occupancy). The order of the additions
        // is fixed (split 0, 1, ...): the result does not depend on which CTA finished last.
        const bool vec4 = (cv.K & 3) == 0;
#define GR 1  // groups of 4 outputs per thread and pass
#define RU (NT >= 256 ? 4 : 8)  // splits per batch of loads: big CTAs have more threads loading
        for (int e0 = tid * 4; e0 < BM * BN; e0 += NT * 4) {
            int mg[GR], kg[GR], nk[GR];
            float v[GR][4];
#pragma unroll
            for (int g = 0; g < GR; ++g) {
                const int e = e0 + g * NT * 4;
                mg[g] = block_m + e / BN;
                kg[g] = block_n + e % BN;
                nk[g] = (e >= BM * BN || mg[g] >= M || kg[g] >= cv.K) ? 0 : min(4, cv.K - kg[g]);
#pragma unroll
                for (int q = 0; q < 4; ++q) v[g][q] = 0.0f;
            }
            for (int s0 = 0; s0 < splits; s0 += RU) {
                float part[RU][GR][4];
#pragma unroll
                for (int u = 0; u < RU; ++u)
#pragma unroll
                    for (int g = 0; g < GR; ++g) {
                        const float* src = ws + ((i64)(s0 + u) * M + mg[g]) * cv.K + kg[g];
                        const bool live = s0 + u < splits && nk[g] > 0;
                        if (live && vec4) {
                            asm("ld.global.cg.v4.f32 {%0,%1,%2,%3}, [%4];"
                                : "=f"(part[u][g][0]), "=f"(part[u][g][1]), "=f"(part[u][g][2]),
                                  "=f"(part[u][g][3])
                                : "l"(src));
                        } else {
#pragma unroll
                            for (int q = 0; q < 4; ++q) {
                                part[u][g][q] = 0.0f;
                                if (live && q < nk[g])
                                    asm("ld.global.cg.f32 %0, [%1];" : "=f"(part[u][g][q])
                                        : "l"(src + q));
                            }
                        }
                    }
#pragma unroll
                for (int u = 0; u < RU; ++u)
#pragma unroll
                    for (int g = 0; g < GR; ++g)
#pragma unroll
                        for (int q = 0; q < 4; ++q) v[g][q] += part[u][g][q];
            }
#pragma unroll
            for (int g = 0; g < GR; ++g)
#pragma unroll
                for (int q = 0; q < 4; ++q) {  // a guard, not a bound: v stays in registers
                    if (q >= nk[g]) break;
                    const int m = mg[g], k = kg[g] + q;
                    const float r =
                        res ? ld_res(res, (i64)m * cv.rcs + k, res_i8, res_scale) : 0.0f;
                    st_out(y, OUT_AT(m, k), cv.epilogue(v[g][q], bias, k, r, res != 0), out_i8,
                           out_inv);
                }
        }
        if (tid == 0) counters[tile] = 0;  // ready for the next launch / graph replay
        return;
    }

    // Stage (acc + bias) as FP16 in shared memory, then apply residual / activation and store
    // 8 outputs per thread (16 bytes FP16, 8 bytes INT8): coalesced global writes and residual
    // reads.
    half_t* Cs = (half_t*)smem_raw;
#define LDC (BN + 8)
    static_assert(BM * LDC * 2 <= STAGES * (BM + BN) * LDS * (int)sizeof(elem_t),
                  "C tile does not fit");
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            const int row = wm * WTM + i * 16 + g + hf * 8;
#pragma unroll
            for (int j = 0; j < NI; ++j) {
                const int col = wn * WTN + j * 8 + 2 * t4;
                const int k = block_n + col;
                const float b0 = (bias && k < cv.K) ? bias[k] : 0.0f;
                const float b1 = (bias && k + 1 < cv.K) ? bias[k + 1] : 0.0f;
                *(unsigned*)(Cs + row * LDC + col) =
                    (unsigned)f2h(facc[i][j][hf * 2] + b0) |
                    ((unsigned)f2h(facc[i][j][hf * 2 + 1] + b1) << 16);
            }
        }
    __syncthreads();
    const int esz = out_i8 ? 1 : 2, rsz = res_i8 ? 1 : 2;
#ifdef D2S
    // a thread stores the same 8 columns in every row it visits: their part of the address once
    static_assert(NT % (BN / 8) == 0, "a thread's columns must not change from row to row");
    const i64 col_off = om.col(block_n + tid % (BN / 8) * 8);
#endif
    for (int e = tid; e < BM * (BN / 8); e += NT) {
        const int row = e / (BN / 8), c8 = e % (BN / 8);
        const int m = block_m + row, k0 = block_n + c8 * 8;
        if (m >= M || k0 >= cv.K) continue;
        union { uint4 v; half_t h[8]; } sv, rv, ov;  // staged (acc + bias), residual, output
        union { uint2 v; i8_t q[8]; } rq, oq;
        sv.v = *(const uint4*)(Cs + row * LDC + c8 * 8);
#ifdef D2S
        char* yp = (char*)y + (om.row(m) + col_off) * esz;
#else
        char* yp = (char*)y + ((i64)m * cv.ycs + k0) * esz;
#endif
        const char* rp = res ? (const char*)res + ((i64)m * cv.rcs + k0) * rsz : nullptr;
        const bool vec = k0 + 8 <= cv.K && OUT_CHUNKS &&
                         ((unsigned long long)yp & (8 * esz - 1)) == 0 &&
                         (!rp || ((unsigned long long)rp & (8 * rsz - 1)) == 0);
        if (vec) {
            if (rp && res_i8) rq.v = *(const uint2*)rp;
            else if (rp) rv.v = *(const uint4*)rp;
            float o[8];
#pragma unroll
            for (int q = 0; q < 8; ++q) {
                const float r = !rp ? 0.0f : (res_i8 ? (float)rq.q[q] * res_scale : h2f(rv.h[q]));
                o[q] = cv.epilogue(h2f(sv.h[q]), nullptr, 0, r, rp != nullptr);
            }
            if (out_i8) {
#pragma unroll
                for (int q = 0; q < 8; ++q) oq.q[q] = f2q(o[q] * out_inv);
                *(uint2*)yp = oq.v;
            } else {
#pragma unroll
                for (int q = 0; q < 8; ++q) ov.h[q] = f2h(o[q]);
                *(uint4*)yp = ov.v;
            }
        } else {
            // unrolled with a guard, not a bound: sv.h[q] at a run-time q would put sv in
            // local memory, and every store of the fast path above through it
#pragma unroll
            for (int q = 0; q < 8; ++q) {
                if (k0 + q >= cv.K) break;
                const float r =
                    rp ? ld_res(res, (i64)m * cv.rcs + k0 + q, res_i8, res_scale) : 0.0f;
                st_out(y, OUT_AT8(m, k0, q),
                       cv.epilogue(h2f(sv.h[q]), nullptr, 0, r, rp != nullptr), out_i8, out_inv);
            }
        }
    }
#else
    // SIMT fallback for pre-Ampere targets: this block's tile, one output at a time, whole
    // reduction in the tile's first piece (the host never splits K below sm_80).
    if (kt0 > 0) return;
    for (int e = tid; e < BM * BN; e += NT) {
        const int m = block_m + e / BN, k = block_n + e % BN;
        if (m >= M || k >= cv.K) continue;
        const WindowOrigin org = window_origin(cv, pixel_of(m, cv.P, cv.Q));
        float acc = 0.0f;
        for (int kk = 0; kk < Kgemm; ++kk) {
            const int c = kk % cv.C, rs = kk / cv.C, r = rs / cv.S, s = rs % cv.S;
            const int ih = org.ih0 + r * cv.dh, iw = org.iw0 + s * cv.dw;
            if (ih < 0 || ih >= cv.H || iw < 0 || iw >= cv.W) continue;
            acc += ld(x, org.base + ((i64)ih * cv.W + iw) * cv.xcs + a_c0 + c) *
                   ld(w, (i64)k * Kgemm + kk);
        }
#ifdef INT8
        acc *= ((const float*)a.p[7])[k];
#endif
        const float rv = res ? ld_res(res, (i64)m * cv.rcs + k, res_i8, res_scale) : 0.0f;
        st_out(y, OUT_AT(m, k), cv.epilogue(acc, bias, k, rv, res != 0), out_i8, out_inv);
    }
#endif
}

extern "C" __global__ void BOUNDS CONV_MMA(const KArgs a) {
    await_previous_kernel();
    const ConvArgs cv = conv_args(a);
    const int ktiles = (cv.R * cv.S * cv.C + BK - 1) / BK;
    const int tiles_m = (cv.N * cv.P * cv.Q + BM - 1) / BM;
#ifdef STREAMK
    const int tiles = tiles_m * ((cv.K + BN - 1) / BN);
    Piece pc;
    pc.total = (i64)tiles * ktiles;
    pc.ktiles = ktiles;
    pc.split = 0;
    const int c = blockIdx.x;
    const i64 end = sk_start(c + 1, pc.total);
    for (i64 it = sk_start(c, pc.total); it < end;) {
        pc.tile = (int)(it / ktiles);
        pc.kt0 = (int)(it - (i64)pc.tile * ktiles);
        pc.kt1 = (int)min((i64)ktiles, pc.kt0 + (end - it));
        pc.block_m = pc.tile % tiles_m * BM;
        pc.block_n = pc.tile / tiles_m * BN;
        pc.slot = it == sk_start(c, pc.total) ? 2 * c : 2 * c + 1;
        pc.first = sk_owner((i64)pc.tile * ktiles, pc.total);
        pc.pieces = sk_owner((i64)(pc.tile + 1) * ktiles - 1, pc.total) - pc.first + 1;
        conv_tile(a, pc);
        it += pc.kt1 - pc.kt0;
        __syncthreads();  // the epilogue's staging reuses the pipeline's shared memory
    }
#else
    const int splits = a.i[21];
    const int per = (ktiles + splits - 1) / splits;
    const int kt0 = blockIdx.z * per;
    const Piece pc{(int)blockIdx.x * BM, (int)blockIdx.y * BN, kt0, min(ktiles, kt0 + per),
                   (int)(blockIdx.y * gridDim.x + blockIdx.x), (int)blockIdx.z};
    (void)tiles_m;
    conv_tile(a, pc);
#endif
}
