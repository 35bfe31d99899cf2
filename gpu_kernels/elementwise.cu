// Element-wise kernels: activations with an optional per-channel affine (standalone
// BatchNormalization), broadcasting binary ops, and one strided copy that does transpose,
// slice, concat-into-place, NCHW<->NHWC reformat and FP32<->FP16 casts.
#include "common.cuh"

#define MAXR 6

// y = act(x * scale[c] + bias[c]); c = (i / inner) % cdim. p = {x, y, scale | 0, bias | 0}
// i = {n (low), n (high), inner, cdim, act}
template <typename T>
__device__ void unary(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    T* y = (T*)a.p[1];
    const float* scale = (const float*)a.p[2];
    const float* bias = (const float*)a.p[3];
    const i64 n = (i64)(unsigned)a.i[0] | ((i64)a.i[1] << 32);
    const int inner = a.i[2], cdim = a.i[3], act = a.i[4];
    for (i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += (i64)gridDim.x * blockDim.x) {
        float v = ld(x, idx);
        if (scale || bias) {
            const int c = ((int)idx / inner) % cdim;  // per-channel tensors stay < 2^31
            if (scale) v *= scale[c];
            if (bias) v += bias[c];
        }
        st(y, idx, activate(v, act, a.f[0], a.f[1]));
    }
}

#define OP_ADD 0
#define OP_SUB 1
#define OP_MUL 2
#define OP_DIV 3
#define OP_POW 4
#define OP_MAX 5
#define OP_MIN 6

// y[idx] = act(a op b) over the output shape, with a/b strides (0 where broadcast).
// p = {a, b, y}; i = {rank, op, act, shape[6], astride[6], bstride[6]}
template <typename T>
__device__ void binary(const KArgs& a) {
    const T* A = (const T*)a.p[0];
    const T* B = (const T*)a.p[1];
    T* y = (T*)a.p[2];
    const int rank = a.i[0], op = a.i[1], act = a.i[2];
    const int* shape = a.i + 3;
    const int* as = a.i + 3 + MAXR;
    const int* bs = a.i + 3 + 2 * MAXR;
    int n = 1;  // 32-bit index math: see conv_simt.cu
    for (int d = 0; d < rank; ++d) n *= shape[d];
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += gridDim.x * blockDim.x) {
        int rem = idx;
        i64 ao = 0, bo = 0;
        for (int d = rank - 1; d >= 0; --d) {
            const int c = rem % shape[d];
            rem /= shape[d];
            ao += (i64)c * as[d];
            bo += (i64)c * bs[d];
        }
        const float u = ld(A, ao), v = ld(B, bo);
        float r;
        switch (op) {
            case OP_ADD: r = u + v; break;
            case OP_SUB: r = u - v; break;
            case OP_MUL: r = u * v; break;
            case OP_DIV: r = u / v; break;
            case OP_POW: r = powf(u, v); break;
            case OP_MAX: r = fmaxf(u, v); break;
            default: r = fminf(u, v); break;
        }
        st(y, (i64)idx, activate(r, act, a.f[0], a.f[1]));
    }
}

// y[yo(idx)] = x[xo(idx)] * f[0] over a shape of up to 6 dims, both sides strided. The factor
// makes the same kernel quantise (1/scale into INT8) and dequantise (scale out of INT8).
// p = {x, y}; i = {rank, shape[6], xstride[6], ystride[6]}; f = {factor}
template <typename TI, typename TO>
__device__ void copy_strided(const KArgs& a) {
    const TI* x = (const TI*)a.p[0];
    TO* y = (TO*)a.p[1];
    const int rank = a.i[0];
    const int* shape = a.i + 1;
    const int* xs = a.i + 1 + MAXR;
    const int* ys = a.i + 1 + 2 * MAXR;
    const float factor = a.f[0];
    int n = 1;
    for (int d = 0; d < rank; ++d) n *= shape[d];
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += gridDim.x * blockDim.x) {
        int rem = idx;
        i64 xo = 0, yo = 0;
        for (int d = rank - 1; d >= 0; --d) {
            const int c = rem % shape[d];
            rem /= shape[d];
            xo += (i64)c * xs[d];
            yo += (i64)c * ys[d];
        }
        st(y, yo, factor == 1.0f ? ld(x, xo) : ld(x, xo) * factor);
    }
}

#define INSTANTIATE(fn)                                                                 \
    extern "C" __global__ void fn##_f32(const KArgs a) { fn<float>(a); }                \
    extern "C" __global__ void fn##_f16(const KArgs a) { fn<half_t>(a); }

INSTANTIATE(unary)
INSTANTIATE(binary)

extern "C" __global__ void copy_f32_f32(const KArgs a) { copy_strided<float, float>(a); }
extern "C" __global__ void copy_f16_f16(const KArgs a) { copy_strided<half_t, half_t>(a); }
extern "C" __global__ void copy_f32_f16(const KArgs a) { copy_strided<float, half_t>(a); }
extern "C" __global__ void copy_f16_f32(const KArgs a) { copy_strided<half_t, float>(a); }
extern "C" __global__ void copy_f32_i8(const KArgs a) { copy_strided<float, i8_t>(a); }
extern "C" __global__ void copy_f16_i8(const KArgs a) { copy_strided<half_t, i8_t>(a); }
extern "C" __global__ void copy_i8_f32(const KArgs a) { copy_strided<i8_t, float>(a); }
extern "C" __global__ void copy_i8_f16(const KArgs a) { copy_strided<i8_t, half_t>(a); }
extern "C" __global__ void copy_i8_i8(const KArgs a) { copy_strided<i8_t, i8_t>(a); }
