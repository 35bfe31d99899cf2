// Shared definitions for every Tandem kernel.
//
// The kernels include no CUDA header at all: FP16 is stored as a raw 16-bit integer and converted
// with inline PTX. That keeps NVRTC free of include paths (pip's NVRTC wheels ship no
// cuda_fp16.h), identical across NVRTC 11/12/13, and cross-compilable on a machine with no CUDA
// toolkit.
#pragma once

typedef unsigned short half_t;  // IEEE binary16 bits
typedef long long i64;

// Every kernel takes one argument of this type, by value. The host fills it generically
// (gpu_kernels/launch.py mirrors it with ctypes), so adding a kernel never needs new host glue.
struct KArgs {
    i64 p[8];     // device pointers
    int i[32];    // integer parameters (shapes, strides, flags)
    float f[8];   // float parameters (activation alpha/beta, scales)
};

// ----- programmatic dependent launch (sm_90+) -----------------------------------------------
// On sm_90+ the host launches each kernel that follows another with programmatic stream
// serialisation (devices/gpu.py): the next kernel may be launched as this one's CTAs retire,
// before its memory flush and the graph's dependency resolution. Hence every kernel first
// waits for its predecessor to complete and flush its writes (griddepcontrol.wait), before it
// reads anything; ordering stays transitive because every kernel waits. No kernel triggers its
// successor early (launch_dependents): CTAs parked early on the SMs made the models slower
// (bench/gpu_vs_torch.py A/B, BENCHMARKS.md). Without the launch attribute, and below sm_90,
// the wait is a no-op.
__device__ __forceinline__ void await_previous_kernel() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// The last-CTA-to-arrive handshake of a reduction spread over CTAs (split-K, stream-K, the SE
// pools): each CTA's global writes are made visible, then its thread 0 counts it in at counter.
// True, in every thread, only for the CTA that arrives as the arrivals-th, which then sees
// every other CTA's writes; the caller resets the counter for the next launch.
__device__ __forceinline__ bool last_to_arrive(int* counter, int arrivals) {
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(counter, 1) == arrivals - 1;
    __syncthreads();
    const bool mine = last;
    if (mine) __threadfence();
    return mine;
}

// An extern "C" entry point: KERNEL(pool2d_f16, pool2d<1, half_t>(a)) defines pool2d_f16, whose
// body (the second argument) sees the KArgs as ``a``. Kernels with launch bounds spell the
// entry out and call await_previous_kernel() first themselves.
#define KERNEL(name, ...)                                                                  \
    extern "C" __global__ void name(const KArgs a) {                                       \
        await_previous_kernel();                                                           \
        __VA_ARGS__;                                                                       \
    }

__device__ __forceinline__ float h2f(half_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ half_t f2h(float f) {
    half_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

typedef signed char i8_t;  // INT8 activations / weights (symmetric, zero point 0)

// float -> int8 as ONNX QuantizeLinear / TensorRT do: round half to even, saturate.
__device__ __forceinline__ i8_t f2q(float f) {
    int q;
    asm("cvt.rni.sat.s32.f32 %0, %1;" : "=r"(q) : "f"(f));
    return (i8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
}

// Load / store any element type through float, so templates read the same for FP32, FP16 and
// INT8 (an INT8 load gives the integer value; scaling is the caller's).
__device__ __forceinline__ float ld(const float* p, i64 i) { return p[i]; }
__device__ __forceinline__ float ld(const half_t* p, i64 i) { return h2f(p[i]); }
__device__ __forceinline__ float ld(const i8_t* p, i64 i) { return (float)p[i]; }
__device__ __forceinline__ void st(float* p, i64 i, float v) { p[i] = v; }
__device__ __forceinline__ void st(half_t* p, i64 i, float v) { p[i] = f2h(v); }
__device__ __forceinline__ void st(i8_t* p, i64 i, float v) { p[i] = f2q(v); }

// Activation codes: keep in sync with gpu_kernels/ops.py (ACT_*).
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_CLIP 2
#define ACT_LEAKY 3
#define ACT_SIGMOID 4
#define ACT_SILU 5
#define ACT_HARDSWISH 6
#define ACT_HARDSIGMOID 7
#define ACT_GELU 8
#define ACT_TANH 9
#define ACT_ERF 10
#define ACT_EXP 11
#define ACT_SQRT 12
#define ACT_RECIP 13
#define ACT_NEG 14
#define ACT_ABS 15
#define ACT_ELU 16
#define ACT_SOFTPLUS 17
#define ACT_MISH 18
#define ACT_LOG 19
#define ACT_GELU_TANH 20  // Gelu approximate="tanh" (opset 20)
#define ACT_FLOOR 21
#define ACT_CEIL 22
#define ACT_ROUND 23  // half to even, as ONNX Round
#define ACT_SIGN 24
#define ACT_SELU 25   // a = alpha, b = gamma
#define ACT_CELU 26   // a = alpha
#define ACT_SOFTSIGN 27
#define ACT_THRESHOLDED_RELU 28  // a = alpha
#define ACT_SIN 29
#define ACT_COS 30

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ float activate(float x, int act, float a, float b) {
    switch (act) {
        case ACT_RELU: return x > 0.0f ? x : 0.0f;
        case ACT_CLIP: return fminf(fmaxf(x, a), b);
        case ACT_LEAKY: return x >= 0.0f ? x : a * x;
        case ACT_SIGMOID: return sigmoidf_(x);
        case ACT_SILU: return x * sigmoidf_(x);
        case ACT_HARDSWISH: return x * fminf(fmaxf(x / 6.0f + 0.5f, 0.0f), 1.0f);
        case ACT_HARDSIGMOID: return fminf(fmaxf(a * x + b, 0.0f), 1.0f);
        case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case ACT_TANH: return tanhf(x);
        case ACT_ERF: return erff(x);
        case ACT_EXP: return expf(x);
        case ACT_SQRT: return sqrtf(x);
        case ACT_RECIP: return 1.0f / x;
        case ACT_NEG: return -x;
        case ACT_ABS: return fabsf(x);
        case ACT_ELU: return x >= 0.0f ? x : a * (expf(x) - 1.0f);
        case ACT_SOFTPLUS: return log1pf(expf(x));
        case ACT_MISH: return x * tanhf(log1pf(expf(x)));
        case ACT_LOG: return logf(x);
        case ACT_FLOOR: return floorf(x);
        case ACT_CEIL: return ceilf(x);
        case ACT_ROUND: return rintf(x);
        case ACT_SIGN: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x);
        case ACT_SELU: return b * (x > 0.0f ? x : a * expm1f(x));
        case ACT_CELU: return fmaxf(x, 0.0f) + fminf(0.0f, a * expm1f(x / a));
        case ACT_SOFTSIGN: return x / (1.0f + fabsf(x));
        case ACT_THRESHOLDED_RELU: return x > a ? x : 0.0f;
        case ACT_SIN: return sinf(x);
        case ACT_COS: return cosf(x);
        case ACT_GELU_TANH: {
            const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);  // sqrt(2/pi)
            return 0.5f * x * (1.0f + tanhf(u));
        }
        default: return x;
    }
}

// The activations convolutions fuse most often stay inline; the rest go through one call so the
// unrolled convolution epilogue stays small (fast NVRTC compiles, no register pressure).
__device__ __noinline__ float activate_call(float x, int act, float a, float b) {
    return activate(x, act, a, b);
}

__device__ __forceinline__ float activate_fast(float x, int act, float a, float b) {
    if (act == ACT_NONE) return x;
    if (act == ACT_RELU) return x > 0.0f ? x : 0.0f;
    if (act == ACT_CLIP) return fminf(fmaxf(x, a), b);
    if (act == ACT_SILU) return x * sigmoidf_(x);
    return activate_call(x, act, a, b);
}

// Fused convolution / GEMM epilogue: bias, optional residual (before or after the activation).
__device__ __forceinline__ float epilogue(float acc, const float* bias, int k, float res,
                                          bool has_res, int res_after_act, int act, float a,
                                          float b) {
    float v = acc + (bias ? bias[k] : 0.0f);
    if (has_res && !res_after_act) v += res;
    v = activate_fast(v, act, a, b);
    if (has_res && res_after_act) v += res;
    return v;
}

// ----- index decoding shared by the NHWC kernels --------------------------------------------
// 32-bit index math throughout (the host keeps every tensor under 2^31 elements): 64-bit
// division costs tens of instructions and dominated these memory-bound kernels.

// n / d for 0 <= n < 2^31 and a run-time divisor d the host turned into a multiplier and a
// shift (ConvProblem.mma_ints in gpu_kernels/tactics.py; Granlund-Montgomery, exact): a
// multiply-high and two adds instead of the tens of instructions of an integer division.
struct FastDiv {
    unsigned mul;
    int shift;
    __device__ __forceinline__ int div(int n) const {
        return (int)((__umulhi((unsigned)n, mul) + (unsigned)n) >> shift);
    }
};

// Output pixel m = (n * P + p) * Q + q of a [N][P][Q] grid.
struct Pixel {
    int n, p, q;
};
__device__ __forceinline__ Pixel pixel_of(int m, int P, int Q) {
    Pixel o;
    o.q = m % Q;
    const int pq = m / Q;
    o.p = pq % P;
    o.n = pq / P;
    return o;
}
__device__ __forceinline__ Pixel pixel_of(int m, int P, int Q, FastDiv by_p, FastDiv by_q) {
    Pixel o;
    const int pq = by_q.div(m);
    o.q = m - pq * Q;
    o.n = by_p.div(pq);
    o.p = pq - o.n * P;
    return o;
}

// Element idx of an NHWC tensor [N][P][Q][C], channel fastest: its channel c and its pixel
// m = idx / C = (n * P + p) * Q + q. Kernels that handle V channels a thread pass C / V and
// scale c by V.
struct NhwcPos {
    int c, m, n, p, q;
};
__device__ __forceinline__ NhwcPos nhwc_pos(int idx, int C, int P, int Q) {
    NhwcPos o;
    o.c = idx % C;
    o.m = idx / C;
    const Pixel px = pixel_of(o.m, P, Q);
    o.n = px.n;
    o.p = px.p;
    o.q = px.q;
    return o;
}

// ----- V consecutive channels as floats -----------------------------------------------------
// V == 1: one element of any type. V == 8: FP16 in one 16-byte access (or INT8 in one 8-byte
// store); the caller guarantees the alignment (C, pixel strides and base offsets multiples of 8).
template <int V, typename T>
__device__ __forceinline__ void ld_vec(const T* p, float (&v)[V]) {
    static_assert(V == 1, "wide loads are FP16 only");
    v[0] = ld(p, 0);
}
template <>
__device__ __forceinline__ void ld_vec<8, half_t>(const half_t* p, float (&v)[8]) {
    union { uint4 u; half_t h[8]; } t;
    t.u = *(const uint4*)p;
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = h2f(t.h[j]);
}

template <int V, typename T>
__device__ __forceinline__ void st_vec(T* p, const float (&v)[V]) {
    static_assert(V == 1, "wide stores are FP16 / INT8 only");
    st(p, 0, v[0]);
}
template <>
__device__ __forceinline__ void st_vec<8, half_t>(half_t* p, const float (&v)[8]) {
    union { uint4 u; half_t h[8]; } t;
#pragma unroll
    for (int j = 0; j < 8; ++j) t.h[j] = f2h(v[j]);
    *(uint4*)p = t.u;
}
template <>
__device__ __forceinline__ void st_vec<8, i8_t>(i8_t* p, const float (&v)[8]) {
    union { uint2 u; i8_t q[8]; } t;
#pragma unroll
    for (int j = 0; j < 8; ++j) t.q[j] = f2q(v[j]);
    *(uint2*)p = t.u;
}

// ----- convolution arguments ----------------------------------------------------------------
// KArgs of every convolution kernel (conv_simt.cu, conv_tiled.cu, conv_mma.cu), as
// ConvProblem.conv_ints in gpu_kernels/tactics.py lays them out:
//   p = {x, w, bias f32 | 0, residual | 0, y, ...}
//   i = {N,H,W,C, K,P,Q, R,S, sh,sw, ph,pw, dh,dw, groups, act, res_after, xcs, ycs, rcs, ...}
//   f = {act alpha, act beta, ...}
// (xcs/ycs/rcs: elements between pixels in x / y / residual: channel slices for zero-copy
// concat.) conv_args copies them into a struct of scalars read by name; it is only ever
// accessed with constant member names, so it lives in registers like the separate locals it
// replaces (never index it with a run-time value: that would put it in local memory).
struct ConvArgs {
    int N, H, W, C, K, P, Q, R, S, sh, sw, ph, pw, dh, dw, groups, act, res_after;
    int xcs, ycs, rcs;
    float alpha, beta;

    // The fused epilogue (bias, activation, residual) with this convolution's activation.
    __device__ __forceinline__ float epilogue(float acc, const float* bias, int k, float res,
                                              bool has_res) const {
        return ::epilogue(acc, bias, k, res, has_res, res_after, act, alpha, beta);
    }
};

__device__ __forceinline__ ConvArgs conv_args(const KArgs& a) {
    const int* i = a.i;  // the members above are in slot order
    return ConvArgs{i[0],  i[1],  i[2],  i[3],  i[4],  i[5],  i[6],  i[7],  i[8],  i[9],  i[10],
                    i[11], i[12], i[13], i[14], i[15], i[16], i[17], i[18], i[19], i[20],
                    a.f[0], a.f[1]};
}

// Where output pixel m's window starts in x: the top-left input row / column (negative inside
// the padding) and the offset of its image. The implicit-GEMM loaders (conv_tiled.cu,
// conv_mma.cu) compute it once per A row they load.
struct WindowOrigin {
    int ih0, iw0;
    i64 base;
};
__device__ __forceinline__ WindowOrigin window_origin(const ConvArgs& cv, const Pixel& px) {
    WindowOrigin o;
    o.ih0 = px.p * cv.sh - cv.ph;
    o.iw0 = px.q * cv.sw - cv.pw;
    o.base = (i64)px.n * cv.H * cv.W * cv.xcs;
    return o;
}
