// Squeeze-and-excitation in two kernels (partitioner/passes/fusion.py decides where):
//   se_dw_pool: where a depthwise convolution writes the block's input, that convolution,
//             summing its output per channel as it writes it (else se_pool, which only sums);
//             the last CTA of an image to finish adds the partial sums and runs both small
//             FCs and the gate once for that image (se_gate), writing gate[n][c] (FP32);
//   se_scale: y = x * gate[n, c], one streaming pass whose grid covers batch x pixels x
//             channel vectors (16-byte loads and stores where the channels allow).
// Every sum is made in a fixed order, whichever CTA finishes last, so a replay gives the same
// bits. Plain SIMT loads, FMAs and one atomic counter per image: the same code on sm_72, sm_87
// and sm_90.
#include "depthwise.cuh"

#define SE_THREADS 256
#define SE_POOL_CHANNELS 32  // channels a se_pool CTA reduces: one warp-wide row of them
#define SE_POOL_ROWS (SE_THREADS / SE_POOL_CHANNELS)
#define SE_SCALE_UNROLL 4    // vectors a se_scale thread loads before it stores any

// ----- the excitation: once per image, by the last CTA of its pool --------------------------
// ws = {partial sums (FP32, N x B x C), gate (FP32, N x C)}; fc = FP32 {w1 (S x C), w2t (S x C:
// fc2's weight transposed, so that threads of neighbouring channels read neighbouring
// weights), b1 (S), b2 (C)} (zero biases where the model has none);
// i = {C, S, HW, B, act, gate act}, f = {act a, act b, gate a, gate b}.
struct SeGate {
    float* ws;
    const float* fc;
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

// Called by every CTA of image n once its partial sums are stored: the last one (a counter per
// image, left at zero again for the next launch / graph replay) computes the gate.
// Dynamic shared memory: at least C + S + SE_THREADS floats.
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
    float* s_mean = smem;          // C
    float* s_hid = smem + C;       // S
    float* s_grp = smem + C + S;   // SE_THREADS: the groups' sums of the means
    // means: thread (c, group) adds partials group, group + G, ... (all loads issued first);
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
    // fc1: a warp per hidden unit, its lanes over the input channels (8 loads in flight each),
    // then a shuffle sum
    const float* w1 = g.fc;
    const float* w2t = g.fc + (i64)S * C;
    const float* b1 = w2t + (i64)S * C;
    const float* b2 = b1 + S;
    const int warp = tid / 32, lane = tid % 32;
    for (int s = warp; s < S; s += SE_THREADS / 32) {
        float acc = 0.0f;
#pragma unroll 8
        for (int c = lane; c < C; c += 32) acc += w1[(i64)s * C + c] * s_mean[c];
#pragma unroll
        for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (lane == 0) s_hid[s] = activate(acc + b1[s], g.act, g.act_a, g.act_b);
    }
    __syncthreads();
    // fc2 and the gate: a thread per output channel, 8 loads in flight
    float* gate = g.ws + (i64)gridDim.z * g.B * C + (i64)n * C;
    for (int c = tid; c < C; c += SE_THREADS) {
        float acc = b2[c];
#pragma unroll 8
        for (int s = 0; s < S; ++s) acc += w2t[(i64)s * C + c] * s_hid[s];
        gate[c] = activate(acc, g.gate_act, g.gate_a, g.gate_b);
    }
    if (tid == 0) counters[n] = 0;
}

__device__ __forceinline__ SeGate se_gate_args(float* ws, const float* fc, const int* i,
                                               const float* f) {
    return SeGate{ws, fc, i[0], i[1], i[2], i[3], i[4], i[5], f[0], f[1], f[2], f[3]};
}

// ----- se_pool: the squeeze of a block whose input a depthwise convolution does not write ---
// p = {x, ws, fc, counters}; i = {N, HW, C, xcs, splits, S, act, gate act}; f = {act a, act b,
// gate a, gate b}; grid (ceil(C / 32), splits, N); dynamic shared memory C + S + 256 floats.
// CTA (x, z, n) sums pixels [z * per, (z + 1) * per) of its 32 channels, per = ceil(HW /
// splits). Each warp reads 32 neighbouring channels of one pixel (coalesced); the 8 warps take
// every 8th pixel and a shared-memory sum in warp order joins them.
template <typename T>
__device__ void se_pool(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    float* ws = (float*)a.p[1];
    const int HW = a.i[1], C = a.i[2], xcs = a.i[3], splits = a.i[4];
    const int n = blockIdx.z, z = blockIdx.y;
    const int per = (HW + splits - 1) / splits;
    const int begin = z * per, end = min(HW, begin + per);
    const int lane = threadIdx.x % SE_POOL_CHANNELS, row = threadIdx.x / SE_POOL_CHANNELS;
    const int c = blockIdx.x * SE_POOL_CHANNELS + lane;
    __shared__ float part[SE_POOL_ROWS][SE_POOL_CHANNELS + 1];
    float acc = 0.0f;
    if (c < C) {
        const T* xp = x + (i64)n * HW * xcs + c;
        for (int i = begin + row; i < end; i += SE_POOL_ROWS) acc += ld(xp, (i64)i * xcs);
    }
    part[row][lane] = acc;
    __syncthreads();
    if (row == 0 && c < C) {
        float sum = 0.0f;
#pragma unroll
        for (int r = 0; r < SE_POOL_ROWS; ++r) sum += part[r][lane];
        ws[((i64)n * splits + z) * C + c] = sum;
    }
    const int gi[6] = {C, a.i[5], HW, splits, a.i[6], a.i[7]};
    extern __shared__ float smem[];
    se_gate_if_last(se_gate_args(ws, (const float*)a.p[2], gi, a.f), n, gridDim.x * gridDim.y,
                    (int*)a.p[3], smem);
}

// ----- se_dw_pool: the depthwise convolution that writes the block's input ------------------
// p = {x, w, bias, residual, y, ws, fc, counters}; i = the convolution's 21, then {CT channel
// vectors a CTA, pixels a CTA, S, act, gate act}; f = {conv act a, conv act b, act a, act b,
// gate a, gate b}; grid (B pixel blocks, ceil(C / V / CT) channel tiles, N); dynamic shared
// memory max(256 V, C + S + 256) floats.
// A CTA is CT lanes (channel vectors of V channels: 16-byte accesses for V = 8) by R = 256 / CT
// rows (pixels): thread (lane, row) writes its channel vector of pixels p0 + row, p0 + row + R,
// ... of its block and sums them in registers (no shared memory in the loop, no serial pass),
// then the R rows' sums are added in a fixed pairwise tree, and row 0 stores the block's
// partial sums (no atomics on data, no zeroing); se_gate_if_last adds the B blocks in order.
template <int V, typename T>
__device__ void se_dw_pool(const KArgs& a) {
    T* y = (T*)a.p[4];
    float* ws = (float*)a.p[5];
    const ConvArgs cv = conv_args(a);
    const int CT = a.i[21], chunk = a.i[22];
    const int CV = cv.C / V, HW = cv.P * cv.Q;
    const int R = SE_THREADS / CT;
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
    extern __shared__ float smem[];  // rows x CT x V sums, then se_gate's
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
            for (int j = 0; j < V; ++j) smem[threadIdx.x * V + j] += smem[(threadIdx.x + h * CT) * V + j];
        }
    }
    __syncthreads();
    if (row == 0 && cvec < CV) {
        float* dst = ws + ((i64)n * gridDim.x + blockIdx.x) * cv.C + cvec * V;
#pragma unroll
        for (int j = 0; j < V; ++j) dst[j] = smem[threadIdx.x * V + j];
    }
    __syncthreads();  // smem is se_gate's from here
    const int gi[6] = {cv.C, a.i[23], HW, (int)gridDim.x, a.i[24], a.i[25]};
    se_gate_if_last(se_gate_args(ws, (const float*)a.p[6], gi, a.f + 2), n,
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

#define INSTANTIATE(fn)                                                                 \
    KERNEL(fn##_f32, fn<float>(a))                                                     \
    KERNEL(fn##_f16, fn<half_t>(a))

INSTANTIATE(se_pool)
KERNEL(se_scale_f32, se_scale<1, float, float>(a))
KERNEL(se_scale_f16, se_scale<1, half_t, half_t>(a))
KERNEL(se_scale_x8_f16, se_scale<8, half_t, half_t>(a))
KERNEL(se_scale_f16_i8, se_scale<1, half_t, i8_t>(a))
KERNEL(se_scale_x8_f16_i8, se_scale<8, half_t, i8_t>(a))
KERNEL(se_dw_pool_f32, se_dw_pool<1, float>(a))
KERNEL(se_dw_pool_f16, se_dw_pool<1, half_t>(a))
KERNEL(se_dw_pool_x8_f16, se_dw_pool<8, half_t>(a))
