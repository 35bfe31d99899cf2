// Squeeze-and-excitation in two kernels (partitioner/passes/fusion.py decides where):
//   se_dw_pool: where a depthwise convolution writes the block's input, that convolution,
//             summing its output per channel as it writes it (else se_pool, which only sums),
//             in blocks of pixels x tiles of channels x images;
//             the last CTA of an image to finish adds the partial sums and runs both small
//             FCs and the gate once for that image (se_gate), writing gate[n][c] (FP32);
//   se_scale: y = x * gate[n, c], one streaming pass whose grid covers batch x pixels x
//             channel vectors (16-byte loads and stores where the channels allow).
// Every sum is made in a fixed order, whichever CTA finishes last, so a replay gives the same
// bits. Plain SIMT loads, FMAs and one atomic counter per image: the same code on sm_72, sm_87
// and sm_90.
#include "depthwise.cuh"

#define SE_THREADS 256
#define SE_SCALE_UNROLL 4    // vectors a se_scale thread loads before it stores any

// ----- the excitation: once per image, by the last CTA of its pool --------------------------
// ws = {partial sums (FP32, N x B x C), gate (FP32, N x C)}; fc = {w1 (S x C), w2t (S x C: fc2's
// weight transposed, so that threads of neighbouring channels read neighbouring weights), both
// of the activations' type T, then from the next 16-byte boundary b1 (S), b2 (C) in FP32 (zero
// where the model has no bias)}; i = {C, S, HW, B, act, gate act}, f = {act a, act b, gate a,
// gate b}.
struct SeGate {
    float* ws;
    const void* fc;
    int C, S, HW, B, act, gate_act;
    float act_a, act_b, gate_a, gate_b;
};

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

// fc1, fc2 and the gate of image n from its means in s_mean (a chain of dependent L2 reads
// that one CTA waits on: V = 8 reads 16 bytes of FP16 weights at a time, two hidden units a
// warp at once, so that the chain stays a few reads long).
template <int V, typename T>
__device__ void se_excite(const SeGate& g, int n, const float* s_mean, float* s_hid) {
    const int C = g.C, S = g.S, CV = C / V, tid = threadIdx.x;
    const T* w1 = (const T*)g.fc;
    const T* w2t = w1 + (i64)S * C;
    const float* b1 = (const float*)((const char*)g.fc +
                                     (((i64)2 * S * C * sizeof(T) + 15) & ~(i64)15));
    const float* b2 = b1 + S;
    // fc1: a warp per two hidden units (s and s + 8), its lanes over the channel vectors, then
    // shuffle sums
    const int warp = tid / 32, lane = tid % 32, warps = SE_THREADS / 32;
    for (int s = warp; s < S; s += 2 * warps) {
        const int s2 = s + warps;
        float acc = 0.0f, acc2 = 0.0f;
#pragma unroll 4
        for (int cv = lane; cv < CV; cv += 32) {
            acc += dot_vec<V, T>(w1 + (i64)s * C + cv * V, s_mean + cv * V);
            if (s2 < S) acc2 += dot_vec<V, T>(w1 + (i64)s2 * C + cv * V, s_mean + cv * V);
        }
#pragma unroll
        for (int off = 16; off > 0; off /= 2) {
            acc += __shfl_xor_sync(0xffffffffu, acc, off);
            acc2 += __shfl_xor_sync(0xffffffffu, acc2, off);
        }
        if (lane == 0) {
            s_hid[s] = activate(acc + b1[s], g.act, g.act_a, g.act_b);
            if (s2 < S) s_hid[s2] = activate(acc2 + b1[s2], g.act, g.act_a, g.act_b);
        }
    }
    __syncthreads();
    // fc2 and the gate: a thread per channel vector, 8 weight reads in flight
    float* gate = g.ws + (i64)gridDim.z * g.B * C + (i64)n * C;
    for (int cv = tid; cv < CV; cv += SE_THREADS) {
        float acc[V];
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] = b2[cv * V + j];
#pragma unroll 8
        for (int s = 0; s < S; ++s) {
            float wv[V];
            ld_vec<V>(w2t + (i64)s * C + cv * V, wv);
            const float h = s_hid[s];
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] += wv[j] * h;
        }
#pragma unroll
        for (int j = 0; j < V; ++j)
            gate[cv * V + j] = activate(acc[j], g.gate_act, g.gate_a, g.gate_b);
    }
}

// Called by every CTA of image n once its partial sums are stored: the last one (a counter per
// image, left at zero again for the next launch / graph replay) computes the gate. V: 8 where
// T is FP16 and C a multiple of 8 (16-byte weight reads), else 1.
// Dynamic shared memory: at least C + max(S, SE_THREADS) floats.
template <int V, typename T>
__device__ void se_gate_if_last(const SeGate& g, int n, int ctas, int* counters,
                                float* smem) {
    __shared__ int is_last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) is_last = atomicAdd(counters + n, 1) == ctas - 1;
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    const int C = g.C, S = g.S, tid = threadIdx.x;
    float* s_mean = smem;     // C
    float* s_grp = smem + C;  // SE_THREADS: the groups' sums of the means, then
    float* s_hid = smem + C;  // S: the hidden layer (so C + max(S, 256) floats fit whenever
                              // fusion.py's 2 C + S do)
    // means: thread (c, group) adds partials group, group + G, ... (8 loads issued at a time);
    // then the G group sums of each channel in group order
    const float* part = g.ws + (i64)n * g.B * C;
    const int G = max(1, min(SE_THREADS / C, g.B));
    for (int t = tid; t < G * C; t += SE_THREADS) {
        const int c = t % C, grp = t / C;
        float sum = 0.0f;
        for (int b0 = grp; b0 < g.B; b0 += 8 * G) {
            float v[8];
#pragma unroll
            for (int u = 0; u < 8; ++u) {
                const int b = b0 + u * G;
                v[u] = b < g.B ? ld_l2(part + (i64)b * C + c) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < 8; ++u) sum += v[u];
        }
        if (G == 1) s_mean[c] = sum / (float)g.HW;
        else s_grp[t] = sum;
    }
    __syncthreads();
    if (G > 1) {
        for (int c = tid; c < C; c += SE_THREADS) {
            float sum = 0.0f;
            for (int grp = 0; grp < G; ++grp) sum += s_grp[grp * C + c];
            s_mean[c] = sum / (float)g.HW;
        }
        __syncthreads();
    }
    se_excite<V, T>(g, n, s_mean, s_hid);
    if (tid == 0) counters[n] = 0;
}

__device__ __forceinline__ SeGate se_gate_args(float* ws, const void* fc, const int* i,
                                               const float* f) {
    return SeGate{ws, fc, i[0], i[1], i[2], i[3], i[4], i[5], f[0], f[1], f[2], f[3]};
}

// ----- the squeeze: partial sums of pixel blocks --------------------------------------------
// Both pools run as CT lanes (channel vectors of V channels: 16-byte accesses for V = 8) by
// R = 256 / CT rows (pixels); grid (B pixel blocks, ceil(C / V / CT) channel tiles, N). Thread
// (lane, row) takes pixels p0 + row, p0 + row + R, ... of its block and sums them in registers
// (no shared memory in the loop, no serial pass); se_block_sums adds the R rows' sums in a
// fixed pairwise tree and row 0 stores the block's partial sums (no atomics on data, no
// zeroing); se_gate_if_last adds the B blocks in block order.
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
// p = {x, ws, fc, counters}; i = {N, HW, C, xcs, CT, pixels a block, S, act, gate act};
// f = {act a, act b, gate a, gate b}; dynamic shared memory max(256 V, C + max(S, 256)) floats.
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
    const int gi[6] = {C, a.i[6], HW, (int)gridDim.x, a.i[7], a.i[8]};
    const SeGate g = se_gate_args(ws, (const void*)a.p[2], gi, a.f);
    if (sizeof(T) == 2 && C % 8 == 0)  // 16-byte weight reads (the weights are FP16)
        se_gate_if_last<8, half_t>(g, n, gridDim.x * gridDim.y, (int*)a.p[3], smem);
    else
        se_gate_if_last<1, T>(g, n, gridDim.x * gridDim.y, (int*)a.p[3], smem);
}

// se_dw_pool: the depthwise convolution that writes the block's input, summing what it writes.
// p = {x, w, bias, residual, y, ws, fc, counters}; i = the convolution's 21, then {CT, pixels a
// block, S, act, gate act}; f = {conv act a, conv act b, act a, act b, gate a, gate b}; dynamic
// shared memory max(256 V, C + max(S, 256)) floats.
template <int V, typename T>
__device__ void se_dw_pool(const KArgs& a) {
    T* y = (T*)a.p[4];
    float* ws = (float*)a.p[5];
    const ConvArgs cv = conv_args(a);
    const int CT = a.i[21], chunk = a.i[22];
    const int CV = cv.C / V, HW = cv.P * cv.Q, R = SE_THREADS / CT;
    const int lane = threadIdx.x % CT, row = threadIdx.x / CT;
    const int cvec = blockIdx.y * CT + lane, n = blockIdx.z;
    const int p0 = blockIdx.x * chunk, p1 = min(HW, p0 + chunk);
    float acc[V];
#pragma unroll
    for (int j = 0; j < V; ++j) acc[j] = 0.0f;
    if (row < R && cvec < CV) {
        for (int pix = p0 + row; pix < p1; pix += R) {
            NhwcPos o;
            o.c = cvec;
            o.n = n;
            o.p = pix / cv.Q;
            o.q = pix - o.p * cv.Q;
            o.m = n * HW + pix;
            float out[V];
            dw_point<V, T>(a, cv, o, out);
            st_vec<V>(y + (i64)o.m * cv.ycs + cvec * V, out);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] += out[j];
        }
    }
    extern __shared__ float smem[];
    se_block_sums<V>(acc, CT, cvec, CV, cv.C, ws, smem);
    const int gi[6] = {cv.C, a.i[23], HW, (int)gridDim.x, a.i[24], a.i[25]};
    se_gate_if_last<V, T>(se_gate_args(ws, (const void*)a.p[6], gi, a.f + 2), n,
                          gridDim.x * gridDim.y, (int*)a.p[7], smem);
}

// ----- se_scale -----------------------------------------------------------------------------
// p = {x, gate (FP32, N x C), y}; i = {N, HW, C, xcs, ycs}; f = {1 / y's INT8 scale (1 for a
// float y)}; grid ceil(N HW C / V / (256 x 4)): thread t of CTA b takes vectors b 1024 + t +
// 256 u (u < 4, all loaded before any is stored) of the N x HW x C / V channel vectors.
// V channels a vector: 1 (any type) or 8 (FP16: 16-byte loads and stores; the host checks C,
// xcs, ycs and the x / y element offsets are multiples of 8). O: y's type (INT8 when the next
// convolution reads INT8: quantised here instead of by a copy kernel).
template <int V, typename T, typename O>
__device__ void se_scale(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    const float* gate = (const float*)a.p[1];
    O* y = (O*)a.p[2];
    const int N = a.i[0], HW = a.i[1], C = a.i[2], xcs = a.i[3], ycs = a.i[4];
    const float out_scale = a.f[0];
    const int CV = C / V, total = N * HW * CV;
    const int e0 = blockIdx.x * (SE_THREADS * SE_SCALE_UNROLL) + threadIdx.x;
    float v[SE_SCALE_UNROLL][V];
    int pix[SE_SCALE_UNROLL], c[SE_SCALE_UNROLL];
#pragma unroll
    for (int u = 0; u < SE_SCALE_UNROLL; ++u) {
        const int e = e0 + u * SE_THREADS;
        pix[u] = e / CV;  // n HW + pixel
        c[u] = (e - pix[u] * CV) * V;
        if (e < total) ld_vec<V>(x + (i64)pix[u] * xcs + c[u], v[u]);
    }
#pragma unroll
    for (int u = 0; u < SE_SCALE_UNROLL; ++u) {
        if (e0 + u * SE_THREADS >= total) continue;
        const float* gp = gate + (i64)(pix[u] / HW) * C + c[u];
#pragma unroll
        for (int j = 0; j < V; ++j) v[u][j] *= gp[j] * out_scale;
        st_vec<V>(y + (i64)pix[u] * ycs + c[u], v[u]);
    }
}

KERNEL(se_pool_f32, se_pool<1, float>(a))
KERNEL(se_pool_f16, se_pool<1, half_t>(a))
KERNEL(se_pool_x8_f16, se_pool<8, half_t>(a))
KERNEL(se_scale_f32, se_scale<1, float, float>(a))
KERNEL(se_scale_f16, se_scale<1, half_t, half_t>(a))
KERNEL(se_scale_x8_f16, se_scale<8, half_t, half_t>(a))
KERNEL(se_scale_f16_i8, se_scale<1, half_t, i8_t>(a))
KERNEL(se_scale_x8_f16_i8, se_scale<8, half_t, i8_t>(a))
KERNEL(se_dw_pool_f32, se_dw_pool<1, float>(a))
KERNEL(se_dw_pool_f16, se_dw_pool<1, half_t>(a))
// 4 CTAs an SM (at most 64 registers; 72 without the bound): more 16-byte reads in flight
extern "C" __global__ void __launch_bounds__(SE_THREADS, 4) se_dw_pool_x8_f16(const KArgs a) {
    await_previous_kernel();
    se_dw_pool<8, half_t>(a);
}
