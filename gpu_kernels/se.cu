// Squeeze-and-excitation in two kernels (partitioner/passes/fusion.py decides where):
//   se_dw_pool: where a depthwise convolution writes the block's input, that convolution,
//             summing its output per channel as it writes it (else se_pool, which only sums),
//             in blocks of pixels x tiles of channels x images; the last CTA of each tile to
//             finish turns the tile's sums into means and its share of the first FC, the last
//             of those of an image adds the shares, bias and activation: hidden[n][s] (FP32);
//   se_scale: a CTA per (pixel block, channel tile, image) first computes the second FC and the
//             gate of its tile's channels from hidden[n] (a tile of the weights, so the FC is
//             spread over every CTA of the image instead of one CTA's serial chain), then
//             streams y = x * gate over its pixels (16-byte loads and stores where the channels
//             allow).
// Every sum is made in a fixed order, whichever CTA finishes last, so a replay gives the same
// bits. Plain SIMT loads, FMAs and atomic counters (per tile and per image): the same code on
// sm_72, sm_87 and sm_90.
#include "depthwise.cuh"

#define SE_THREADS 256
#define SE_SCALE_UNROLL 4    // pixels a se_scale thread loads before it stores any

// ----- the excitation's first FC: by the last CTAs of the pool's tiles and image ----------
// fc = {w1 (S x C), w2t (S x C: fc2's weight transposed, so that threads of neighbouring
// channels read neighbouring weights), both of the activations' type T, then from the next
// 16-byte boundary b1 (S), b2 (C) in FP32 (zero where the model has no bias)}; i = {C, S, HW,
// act}, f = {act a, act b}.
struct SeHidden {
    float* ws;
    const void* fc;
    int C, S, HW, act;
    float act_a, act_b;
};

// fc's FP32 biases {b1 (S), b2 (C)}: after both weight matrices, at the next 16 bytes
template <typename T>
__device__ __forceinline__ const float* se_biases(const void* fc, int S, int C) {
    return (const float*)((const char*)fc + (((i64)2 * S * C * sizeof(T) + 15) & ~(i64)15));
}

// An L2 load (ld.global.cg): the partial sums were written by other CTAs of this launch, so
// they must not come from this SM's L1.
__device__ __forceinline__ float ld_l2(const float* p) {
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

// sum_j w[j] * m[j] over V channels (w: V weights of T, m: V means in shared memory)
template <int V, typename T>
__device__ __forceinline__ float dot_vec(const T* w, const float* m) {
    float wv[V];
    ld_vec<V>(w, wv);
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < V; ++j) acc += wv[j] * m[j];
    return acc;
}

// Called by every CTA of (image n, channel tile) once its partial sums are stored. The last
// CTA of the tile (a counter per (n, tile)) adds the tile's B partial sums into means and
// multiplies them by the tile's columns of fc1: the tile's share of every hidden unit, into
// ws. The last such CTA of the image (a counter per image) adds the tiles' shares in tile order,
// the bias and the activation: hidden[n]. So fc1 runs on as many SMs as there are tiles, each
// reading only its columns, and the chain a CTA waits on is a tile's width long. Every counter
// is left at zero again for the next launch / graph replay. V: 8 where T is FP16 and C a
// multiple of 8 (16-byte weight reads), else 1. ws = {partial sums (N x B x C), the tiles'
// shares (N x tiles x S), hidden (N x S)}, FP32. Dynamic shared memory: at least 512 floats.
template <int V, typename T>
__device__ void se_hidden_if_last(const SeHidden& g, int CT, int* counters, float* smem) {
    const int N = gridDim.z, tiles = gridDim.y, B = gridDim.x, n = blockIdx.z, tile = blockIdx.y;
    if (!last_to_arrive(counters + n * tiles + tile, B)) return;
    const int C = g.C, S = g.S, tid = threadIdx.x;
    const int c0 = tile * CT * V, TC = min(CT * V, C - c0);  // the tile's channels (<= 256)
    float* s_mean = smem;      // TC
    float* s_grp = smem + TC;  // SE_THREADS: the groups' sums of the means
    // means: thread (c, group) adds partials group, group + G, ... (8 loads issued at a time);
    // then the G group sums of each channel in group order
    const float* part = g.ws + (i64)n * B * C + c0;
    const int G = max(1, min(SE_THREADS / TC, B));
    for (int t = tid; t < G * TC; t += SE_THREADS) {
        const int c = t % TC, grp = t / TC;
        float sum = 0.0f;
        for (int b0 = grp; b0 < B; b0 += 8 * G) {
            float v[8];
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int b = b0 + u * G;
                v[u] = b < B ? ld_l2(part + (i64)b * C + c) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < 8; ++u) sum += v[u];
        }
        if (G == 1) s_mean[c] = sum / (float)g.HW;
        else s_grp[t] = sum;
    }
    __syncthreads();
    if (G > 1) {
        for (int c = tid; c < TC; c += SE_THREADS) {
            float sum = 0.0f;
            for (int grp = 0; grp < G; ++grp) sum += s_grp[grp * TC + c];
            s_mean[c] = sum / (float)g.HW;
        }
        __syncthreads();
    }
    // the tile's share of fc1: a thread per hidden unit, along its row of the tile's columns
    const T* w1 = (const T*)g.fc;
    float* shares = g.ws + (i64)N * B * C;
    for (int s = tid; s < S; s += SE_THREADS) {
        const T* row = w1 + (i64)s * C + c0;
        float acc = 0.0f;
#pragma unroll 4
        for (int cv = 0; cv < TC / V; ++cv) acc += dot_vec<V, T>(row + cv * V, s_mean + cv * V);
        shares[((i64)n * tiles + tile) * S + s] = acc;
    }
    if (tid == 0) counters[n * tiles + tile] = 0;
    if (!last_to_arrive(counters + N * tiles + n, tiles)) return;
    const float* b1 = se_biases<T>(g.fc, S, C);
    float* hidden = shares + (i64)N * tiles * S + (i64)n * S;
    for (int s = tid; s < S; s += SE_THREADS) {
        float sum = b1[s];
        for (int t = 0; t < tiles; ++t) sum += ld_l2(shares + ((i64)n * tiles + t) * S + s);
        hidden[s] = activate(sum, g.act, g.act_a, g.act_b);
    }
    if (tid == 0) counters[N * tiles + n] = 0;
}

__device__ __forceinline__ SeHidden se_hidden_args(float* ws, const void* fc, const int* i,
                                               const float* f) {
    return SeHidden{ws, fc, i[0], i[1], i[2], i[3], f[0], f[1]};
}

// ----- the squeeze: partial sums of pixel blocks --------------------------------------------
// Both pools run as CT lanes (channel vectors of V channels: 16-byte accesses for V = 8) by
// R = 256 / CT rows (pixels); grid (B pixel blocks, ceil(C / V / CT) channel tiles, N). Thread
// (lane, row) takes pixels p0 + row, p0 + row + R, ... of its block and sums them in registers
// (no shared memory in the loop, no serial pass); se_block_sums adds the R rows' sums in a
// fixed pairwise tree and row 0 stores the block's partial sums (no atomics on data, no
// zeroing); se_hidden_if_last adds the B blocks in block order.
template <int V>
__device__ void se_block_sums(const float (&acc)[V], int CT, int cvec, int CV, int C, float* ws,
                              float* smem) {
    const int R = SE_THREADS / CT, row = threadIdx.x / CT;
    if (row < R) {
#pragma unroll
        for (int j = 0; j < V; ++j) smem[threadIdx.x * V + j] = acc[j];
    }
    int h = 1;  // the largest power of two below R (R >= 2), then halves
    while (2 * h < R) h *= 2;
    for (; h > 0; h /= 2) {
        __syncthreads();
        if (row < h && row + h < R) {
#pragma unroll
            for (int j = 0; j < V; ++j)
                smem[threadIdx.x * V + j] += smem[(threadIdx.x + h * CT) * V + j];
        }
    }
    __syncthreads();
    if (row == 0 && cvec < CV) {
        float* dst = ws + ((i64)blockIdx.z * gridDim.x + blockIdx.x) * C + cvec * V;
#pragma unroll
        for (int j = 0; j < V; ++j) dst[j] = smem[threadIdx.x * V + j];
    }
    __syncthreads();  // smem is se_gate's from here
}

// se_pool: the squeeze of a block whose input a depthwise convolution does not write.
// p = {x, ws, fc, counters}; i = {N, HW, C, xcs, CT, pixels a block, S, act};
// f = {act a, act b}; dynamic shared memory 256 max(V, 2) floats.
template <int V, typename T>
__device__ void se_pool(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    float* ws = (float*)a.p[1];
    const int HW = a.i[1], C = a.i[2], xcs = a.i[3], CT = a.i[4], chunk = a.i[5];
    const int CV = C / V, R = SE_THREADS / CT;
    const int lane = threadIdx.x % CT, row = threadIdx.x / CT;
    const int cvec = blockIdx.y * CT + lane, n = blockIdx.z;
    const int p0 = blockIdx.x * chunk, p1 = min(HW, p0 + chunk);
    float acc[V];
#pragma unroll
    for (int j = 0; j < V; ++j) acc[j] = 0.0f;
    if (row < R && cvec < CV) {
        const T* xp = x + (i64)n * HW * xcs + cvec * V;
#pragma unroll 4
        for (int pix = p0 + row; pix < p1; pix += R) {
            float v[V];
            ld_vec<V>(xp + (i64)pix * xcs, v);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] += v[j];
        }
    }
    extern __shared__ float smem[];
    se_block_sums<V>(acc, CT, cvec, CV, C, ws, smem);
    const int gi[4] = {C, a.i[6], HW, a.i[7]};
    se_hidden_if_last<V, T>(se_hidden_args(ws, (const void*)a.p[2], gi, a.f), CT, (int*)a.p[3],
                            smem);
}

// se_dw_pool: the depthwise convolution that writes the block's input, summing what it writes.
// Its units are strips of STRIP pixels along a row (depthwise.cuh), not pixels: the blocks,
// rows and CT of se_pool's scheme over an image's P x ceil(Q / STRIP) strips; a thread adds
// its strips' pixels in order.
// p = {x, w, bias, residual, y, ws, fc, counters}; i = the convolution's 21, then {CT, strips a
// block, S, act}; f = {conv act a, conv act b, act a, act b}; dynamic shared memory
// 256 max(V, 2) floats.
template <int STRIP, int V, typename T>
__device__ void se_dw_pool(const KArgs& a) {
    T* y = (T*)a.p[4];
    float* ws = (float*)a.p[5];
    const ConvArgs cv = conv_args(a);
    const int CT = a.i[21], chunk = a.i[22];
    const int CV = cv.C / V, QB = (cv.Q + STRIP - 1) / STRIP, R = SE_THREADS / CT;
    const int lane = threadIdx.x % CT, row = threadIdx.x / CT;
    const int cvec = blockIdx.y * CT + lane, n = blockIdx.z;
    const int b0 = blockIdx.x * chunk, b1 = min(cv.P * QB, b0 + chunk);
    float acc[V];
#pragma unroll
    for (int j = 0; j < V; ++j) acc[j] = 0.0f;
    if (row < R && cvec < CV) {
        for (int strip = b0 + row; strip < b1; strip += R) {
            const int p = strip / QB, q0 = (strip - p * QB) * STRIP;
            float out[STRIP][V];
            dw_strip<STRIP, V, T>(a, cv, n, p, q0, cvec * V, out);
            T* yp = y + (((i64)n * cv.P + p) * cv.Q + q0) * cv.ycs + cvec * V;
#pragma unroll
            for (int i = 0; i < STRIP; ++i) {
                if (q0 + i >= cv.Q) continue;
                st_vec<V>(yp + (i64)i * cv.ycs, out[i]);
#pragma unroll
                for (int j = 0; j < V; ++j) acc[j] += out[i][j];
            }
        }
    }
    extern __shared__ float smem[];
    se_block_sums<V>(acc, CT, cvec, CV, cv.C, ws, smem);
    const int gi[4] = {cv.C, a.i[23], cv.P * cv.Q, a.i[24]};
    se_hidden_if_last<V, T>(se_hidden_args(ws, (const void*)a.p[6], gi, a.f + 2), CT,
                            (int*)a.p[7], smem);
}

// ----- se_scale -----------------------------------------------------------------------------
// p = {x, hidden (FP32, N x S), y, fc}; i = {N, HW, C, xcs, ycs, CT, pixels a block, S, gate
// act}; f = {1 / y's INT8 scale (1 for a float y), gate a, gate b}; grid (pixel blocks,
// ceil(C / V / CT) channel tiles, N); dynamic shared memory S + (256 + CT) V floats.
// Thread (lane, row) of the R = 256 / CT rows: channel vector lane of the tile. The gate: row r
// adds fc2's terms s = r, r + R, ... of its vector (16-byte weight reads for V = 8), row 0 adds
// the rows in row order (the same bits in every CTA of the tile), then the gate's activation.
// The scale: row r takes pixels p0 + r, p0 + r + R, ... of the block, SE_SCALE_UNROLL loads in
// flight before any store.
// Latency first (at batch 1 each of these kernels takes a few microseconds): the hidden layer
// and the first pixels are loaded at once, before the gate is computed. The weights are not
// (loading the first 4 a thread too took the kernel to 94 registers on sm_87: 2 CTAs an SM).
// V channels a vector: 1 (any type) or 8 (FP16: 16-byte loads and stores; the host checks C,
// xcs, ycs and the x / y element offsets are multiples of 8). O: y's type (INT8 when the next
// convolution reads INT8: quantised here instead of by a copy kernel).
template <int V, typename T, typename O>
__device__ void se_scale(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    const float* hidden = (const float*)a.p[1];
    O* y = (O*)a.p[2];
    const int HW = a.i[1], C = a.i[2], xcs = a.i[3], ycs = a.i[4], CT = a.i[5], chunk = a.i[6];
    const int S = a.i[7], gate_act = a.i[8];
    const float out_scale = a.f[0];
    const int CV = C / V, R = SE_THREADS / CT, SR = min(S, R);  // rows with fc2 terms
    const int lane = threadIdx.x % CT, row = threadIdx.x / CT;
    const int cvec = blockIdx.y * CT + lane, n = blockIdx.z;
    const bool active = row < R && cvec < CV;
    const T* w2t = (const T*)a.p[3] + (i64)S * C + cvec * V;
    extern __shared__ float smem[];
    float* s_hid = smem;                  // S
    float* s_part = smem + S;             // R x CT x V: the rows' fc2 sums
    float* s_gate = s_part + R * CT * V;  // CT x V
    for (int s = threadIdx.x; s < S; s += SE_THREADS) s_hid[s] = hidden[(i64)n * S + s];
    const int p1 = min(HW, (blockIdx.x + 1) * chunk);
    const T* xp = x + (i64)n * HW * xcs + cvec * V;
    O* yp = y + (i64)n * HW * ycs + cvec * V;
    int p0 = blockIdx.x * chunk + row;
    float v[SE_SCALE_UNROLL][V];
    if (active) {
#pragma unroll
        for (int u = 0; u < SE_SCALE_UNROLL; ++u)
            if (p0 + u * R < p1) ld_vec<V>(xp + (i64)(p0 + u * R) * xcs, v[u]);
    }
    __syncthreads();
    if (active && row < SR) {
        float acc[V];
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] = 0.0f;
#pragma unroll 2
        for (int s = row; s < S; s += R) {
            float wv[V];
            ld_vec<V>(w2t + (i64)s * C, wv);
            const float h = s_hid[s];
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] += wv[j] * h;
        }
#pragma unroll
        for (int j = 0; j < V; ++j) s_part[(row * CT + lane) * V + j] = acc[j];
    }
    __syncthreads();
    if (row == 0 && cvec < CV) {
        const float* b2 = se_biases<T>((const void*)a.p[3], S, C) + S + cvec * V;
#pragma unroll
        for (int j = 0; j < V; ++j) {
            float g = b2[j];
            for (int r = 0; r < SR; ++r) g += s_part[(r * CT + lane) * V + j];
            s_gate[lane * V + j] = activate(g, gate_act, a.f[1], a.f[2]);
        }
    }
    __syncthreads();
    if (!active) return;
    float g[V];
#pragma unroll
    for (int j = 0; j < V; ++j) g[j] = s_gate[lane * V + j] * out_scale;
    while (true) {
#pragma unroll
        for (int u = 0; u < SE_SCALE_UNROLL; ++u) {
            if (p0 + u * R >= p1) continue;
#pragma unroll
            for (int j = 0; j < V; ++j) v[u][j] *= g[j];
            st_vec<V>(yp + (i64)(p0 + u * R) * ycs, v[u]);
        }
        p0 += R * SE_SCALE_UNROLL;
        if (p0 >= p1) break;
#pragma unroll
        for (int u = 0; u < SE_SCALE_UNROLL; ++u)
            if (p0 + u * R < p1) ld_vec<V>(xp + (i64)(p0 + u * R) * xcs, v[u]);
    }
}

KERNEL(se_pool_f32, se_pool<1, float>(a))
KERNEL(se_pool_f16, se_pool<1, half_t>(a))
KERNEL(se_pool_x8_f16, se_pool<8, half_t>(a))
KERNEL(se_scale_f32, se_scale<1, float, float>(a))
KERNEL(se_scale_f16, se_scale<1, half_t, half_t>(a))
KERNEL(se_scale_f16_i8, se_scale<1, half_t, i8_t>(a))
// 4 CTAs an SM (at most 64 registers; 68 without the bound, 3 CTAs)
extern "C" __global__ void __launch_bounds__(SE_THREADS, 4) se_scale_x8_f16(const KArgs a) {
    await_previous_kernel();
    se_scale<8, half_t, half_t>(a);
}
extern "C" __global__ void __launch_bounds__(SE_THREADS, 4) se_scale_x8_f16_i8(const KArgs a) {
    await_previous_kernel();
    se_scale<8, half_t, i8_t>(a);
}
// strips of DW_STRIP pixels, and of one (_px1_) for grids that do not fill the GPU
KERNEL(se_dw_pool_f32, se_dw_pool<DW_STRIP, 1, float>(a))
KERNEL(se_dw_pool_f16, se_dw_pool<DW_STRIP, 1, half_t>(a))
KERNEL(se_dw_pool_px1_f32, se_dw_pool<1, 1, float>(a))
KERNEL(se_dw_pool_px1_f16, se_dw_pool<1, 1, half_t>(a))
// 2 CTAs an SM (at most 128 registers; 130-134 without the bound, 1 CTA): the strips' loads
// keep enough 16-byte reads in flight
extern "C" __global__ void __launch_bounds__(SE_THREADS, 2) se_dw_pool_x8_f16(const KArgs a) {
    await_previous_kernel();
    se_dw_pool<DW_STRIP, 8, half_t>(a);
}
// 4 CTAs an SM: one pixel's accumulators take 64 registers
extern "C" __global__ void __launch_bounds__(SE_THREADS, 4) se_dw_pool_px1_x8_f16(const KArgs a) {
    await_previous_kernel();
    se_dw_pool<1, 8, half_t>(a);
}
