// Row-wise normalisations: softmax and layer normalisation over the trailing axes of a plain
// (row-major) tensor, instance / group normalisation. One block per row, FP32 statistics, warp
// shuffles then shared memory.
#include "common.cuh"

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reduction (sum or max); every thread gets the result. blockDim.x % 32 == 0.
__device__ float block_reduce(float v, bool is_max, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = is_max ? -3.402823466e38f : 0.0f;
    for (int i = 0; i < nw; ++i) r = is_max ? fmaxf(r, scratch[i]) : r + scratch[i];
    return r;
}

// softmax(s * x) per row (s: attention's 1 / sqrt(d), folded in by the lowering), or its log
// (LogSoftmax) where i[2] is set. p = {x, y}; i = {rows, L, log}; f = {s}
template <typename T>
__device__ void softmax_lastdim(const KArgs& a) {
    __shared__ float scratch[32];
    const T* x = (const T*)a.p[0] + (i64)blockIdx.x * a.i[1];
    T* y = (T*)a.p[1] + (i64)blockIdx.x * a.i[1];
    const int L = a.i[1];
    const float s = a.f[0];
    float mx = -3.402823466e38f;
    for (int j = threadIdx.x; j < L; j += blockDim.x) mx = fmaxf(mx, s * ld(x, j));
    mx = block_reduce(mx, true, scratch);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < L; j += blockDim.x) sum += expf(s * ld(x, j) - mx);
    sum = block_reduce(sum, false, scratch);
    const float inv = 1.0f / sum, lse = mx + logf(sum);
    if (a.i[2]) {
        for (int j = threadIdx.x; j < L; j += blockDim.x) st(y, j, s * ld(x, j) - lse);
        return;
    }
    for (int j = threadIdx.x; j < L; j += blockDim.x) st(y, j, expf(s * ld(x, j) - mx) * inv);
}

// p = {x, y, gamma f32 | 0, beta f32 | 0}; i = {rows, L}; f = {epsilon}
template <typename T>
__device__ void layernorm_lastdim(const KArgs& a) {
    __shared__ float scratch[32];
    const T* x = (const T*)a.p[0] + (i64)blockIdx.x * a.i[1];
    T* y = (T*)a.p[1] + (i64)blockIdx.x * a.i[1];
    const float* gamma = (const float*)a.p[2];
    const float* beta = (const float*)a.p[3];
    const int L = a.i[1];
    float s = 0.0f;
    for (int j = threadIdx.x; j < L; j += blockDim.x) s += ld(x, j);
    const float mean = block_reduce(s, false, scratch) / L;
    float v = 0.0f;
    for (int j = threadIdx.x; j < L; j += blockDim.x) {
        const float d = ld(x, j) - mean;
        v += d * d;
    }
    const float rstd = rsqrtf(block_reduce(v, false, scratch) / L + a.f[0]);
    for (int j = threadIdx.x; j < L; j += blockDim.x) {
        float o = (ld(x, j) - mean) * rstd;
        if (gamma) o *= gamma[j];
        if (beta) o += beta[j];
        st(y, j, o);
    }
}

// Instance / group normalisation: a block per (image, group) row of L = channels-per-group x
// spatial elements, FP32 statistics over the row, then a per-channel scale and bias. Reads and
// writes NCHW-like plain data or NHWC in place (no layout copy around it).
// p = {x, y, gamma f32 [C], beta f32 [C]}; i = {rows, L, HW, cpg, G, ns, cs, ps, chan_inner};
// f = {epsilon}. Element j of row r = n * G + g is channel g * cpg + cl at pixel p, where
// (cl, p) = (j / HW, j % HW), or (j % cpg, j / cpg) when chan_inner (NHWC: neighbouring
// threads read neighbouring channels); its offset is n * ns + channel * cs + p * ps.
template <typename T>
__device__ void groupnorm(const KArgs& a) {
    __shared__ float scratch[32];
    const int L = a.i[1], HW = a.i[2], cpg = a.i[3], G = a.i[4];
    const int ns = a.i[5], cs = a.i[6], ps = a.i[7], chan_inner = a.i[8];
    const int n = blockIdx.x / G, g = blockIdx.x % G;
    const T* x = (const T*)a.p[0];
    T* y = (T*)a.p[1];
    const float* gamma = (const float*)a.p[2];
    const float* beta = (const float*)a.p[3];
    const i64 base = (i64)n * ns + (i64)g * cpg * cs;
    float s = 0.0f;
    for (int j = threadIdx.x; j < L; j += blockDim.x) {
        const int cl = chan_inner ? j % cpg : j / HW, p = chan_inner ? j / cpg : j % HW;
        s += ld(x, base + (i64)cl * cs + (i64)p * ps);
    }
    const float mean = block_reduce(s, false, scratch) / L;
    float v = 0.0f;
    for (int j = threadIdx.x; j < L; j += blockDim.x) {
        const int cl = chan_inner ? j % cpg : j / HW, p = chan_inner ? j / cpg : j % HW;
        const float d = ld(x, base + (i64)cl * cs + (i64)p * ps) - mean;
        v += d * d;
    }
    const float rstd = rsqrtf(block_reduce(v, false, scratch) / L + a.f[0]);
    for (int j = threadIdx.x; j < L; j += blockDim.x) {
        const int cl = chan_inner ? j % cpg : j / HW, p = chan_inner ? j / cpg : j % HW;
        const i64 o = base + (i64)cl * cs + (i64)p * ps;
        const int c = g * cpg + cl;
        st(y, o, (ld(x, o) - mean) * rstd * gamma[c] + beta[c]);
    }
}

#define INSTANTIATE(fn)                                                                 \
    KERNEL(fn##_f32, fn<float>(a))                                                     \
    KERNEL(fn##_f16, fn<half_t>(a))

INSTANTIATE(softmax_lastdim)
INSTANTIATE(layernorm_lastdim)
INSTANTIATE(groupnorm)
