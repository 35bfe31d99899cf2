// Row-wise reductions over the last axis of a plain (row-major) tensor: softmax and layer
// normalisation. One block per row, FP32 statistics, warp shuffles then shared memory.
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

#define INSTANTIATE(fn)                                                                 \
    KERNEL(fn##_f32, fn<float>(a))                                                     \
    KERNEL(fn##_f16, fn<half_t>(a))

INSTANTIATE(softmax_lastdim)
INSTANTIATE(layernorm_lastdim)
