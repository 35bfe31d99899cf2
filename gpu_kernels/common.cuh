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
