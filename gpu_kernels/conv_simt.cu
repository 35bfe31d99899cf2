// Direct (SIMT) convolution on NHWC: every group size, stride, dilation and padding; FP32 and
// FP16 storage with FP32 accumulation. It is the grouped path on every arch (one group runs the
// tiled SIMT GEMM of conv_tiled.cu or the tensor cores of conv_mma.cu).
// Also: depthwise convolution and ConvTranspose (direct, NHWC).
#include "common.cuh"

// args: p = {x, w[K][R][S][C/groups], bias f32 | 0, residual | 0, y}
// i = {N,H,W,C, K,P,Q, R,S, sh,sw, ph,pw, dh,dw, groups, act, res_after, xcs, ycs, rcs}
// (xcs/ycs/rcs: elements between pixels in x / y / residual: channel slices for zero-copy concat)
template <typename T>
__device__ void conv_direct(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    const T* w = (const T*)a.p[1];
    const float* bias = (const float*)a.p[2];
    const T* res = (const T*)a.p[3];
    T* y = (T*)a.p[4];
    const int N = a.i[0], H = a.i[1], W = a.i[2], C = a.i[3], K = a.i[4], P = a.i[5], Q = a.i[6];
    const int R = a.i[7], S = a.i[8], sh = a.i[9], sw = a.i[10], ph = a.i[11], pw = a.i[12];
    const int dh = a.i[13], dw = a.i[14], groups = a.i[15], act = a.i[16], res_after = a.i[17];
    const int xcs = a.i[18], ycs = a.i[19], rcs = a.i[20];
    const int Cg = C / groups, Kg = K / groups;
    // 32-bit index math (the host keeps every tensor under 2^31 elements): 64-bit division
    // costs tens of instructions and dominated these memory-bound kernels.
    const int total = N * P * Q * K;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const int k = idx % K;
        const int m = idx / K;
        const int q = m % Q;
        const int pq = m / Q;
        const int p = pq % P;
        const int n = pq / P;
        const int c0 = (k / Kg) * Cg;
        const T* wk = w + (i64)k * R * S * Cg;
        float acc = 0.0f;
        for (int r = 0; r < R; ++r) {
            const int ih = p * sh - ph + r * dh;
            if (ih < 0 || ih >= H) continue;
            for (int s = 0; s < S; ++s) {
                const int iw = q * sw - pw + s * dw;
                if (iw < 0 || iw >= W) continue;
                const T* xp = x + (((i64)n * H + ih) * W + iw) * xcs + c0;
                const T* wp = wk + (r * S + s) * Cg;
                for (int c = 0; c < Cg; ++c) acc += ld(xp, c) * ld(wp, c);
            }
        }
        const float rv = res ? ld(res, (i64)m * rcs + k) : 0.0f;
        st(y, (i64)m * ycs + k,
           epilogue(acc, bias, k, rv, res != 0, res_after, act, a.f[0], a.f[1]));
    }
}

// Depthwise convolution (groups == C == K), NHWC, weights [R][S][C] so that neighbouring
// threads (neighbouring channels) read neighbouring weights. Same args as conv_direct; with an
// INT8 output (TO = i8_t, feeding an INT8 convolution) f[2] = 1 / output scale.
template <typename T, typename TO = T>
__device__ void conv_dw(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    const T* w = (const T*)a.p[1];
    const float* bias = (const float*)a.p[2];
    const T* res = (const T*)a.p[3];
    TO* y = (TO*)a.p[4];
    const float out_factor = sizeof(TO) == 1 ? a.f[2] : 1.0f;
    const int N = a.i[0], H = a.i[1], W = a.i[2], C = a.i[3], P = a.i[5], Q = a.i[6];
    const int R = a.i[7], S = a.i[8], sh = a.i[9], sw = a.i[10], ph = a.i[11], pw = a.i[12];
    const int dh = a.i[13], dw = a.i[14], act = a.i[16], res_after = a.i[17];
    const int xcs = a.i[18], ycs = a.i[19], rcs = a.i[20];
    const int total = N * P * Q * C;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const int c = idx % C;
        const int m = idx / C;
        const int q = m % Q;
        const int pq = m / Q;
        const int p = pq % P;
        const int n = pq / P;
        float acc = 0.0f;
        const int ih0 = p * sh - ph, iw0 = q * sw - pw;
        for (int r = 0; r < R; ++r) {
            const int ih = ih0 + r * dh;
            if (ih < 0 || ih >= H) continue;
            const T* xrow = x + ((i64)(n * H + ih) * W) * xcs + c;
            for (int s = 0; s < S; ++s) {
                const int iw = iw0 + s * dw;
                if (iw < 0 || iw >= W) continue;
                acc += ld(xrow, (i64)iw * xcs) * ld(w, (r * S + s) * C + c);
            }
        }
        const float rv = res ? ld(res, (i64)m * rcs + c) : 0.0f;
        st(y, (i64)m * ycs + c,
           epilogue(acc, bias, c, rv, res != 0, res_after, act, a.f[0], a.f[1]) * out_factor);
    }
}

// Depthwise with 8 channels per thread: 16-byte loads of x and w and one 16-byte (FP16) or
// 8-byte (INT8) store, a tenth of the instructions of conv_dw. FP16 only; the host checks that
// C, every pixel stride and every base offset are multiples of 8 elements. Same args as conv_dw.
template <typename TO>
__device__ void conv_dw_x8(const KArgs& a) {
    const half_t* x = (const half_t*)a.p[0];
    const half_t* w = (const half_t*)a.p[1];
    const float* bias = (const float*)a.p[2];
    const half_t* res = (const half_t*)a.p[3];
    TO* y = (TO*)a.p[4];
    const int N = a.i[0], H = a.i[1], W = a.i[2], C = a.i[3], P = a.i[5], Q = a.i[6];
    const int R = a.i[7], S = a.i[8], sh = a.i[9], sw = a.i[10], ph = a.i[11], pw = a.i[12];
    const int dh = a.i[13], dw = a.i[14], act = a.i[16], res_after = a.i[17];
    const int xcs = a.i[18], ycs = a.i[19], rcs = a.i[20];
    const int C8 = C / 8;
    const int total = N * P * Q * C8;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const int c = (idx % C8) * 8;
        const int m = idx / C8;
        const int q = m % Q;
        const int pq = m / Q;
        const int p = pq % P;
        const int n = pq / P;
        float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        const int ih0 = p * sh - ph, iw0 = q * sw - pw;
        for (int r = 0; r < R; ++r) {
            const int ih = ih0 + r * dh;
            if (ih < 0 || ih >= H) continue;
            const half_t* xrow = x + ((i64)(n * H + ih) * W) * xcs + c;
            for (int s = 0; s < S; ++s) {
                const int iw = iw0 + s * dw;
                if (iw < 0 || iw >= W) continue;
                union { uint4 v; half_t h[8]; } xv, wv;
                xv.v = *(const uint4*)(xrow + (i64)iw * xcs);
                wv.v = *(const uint4*)(w + (r * S + s) * C + c);
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[j] += h2f(xv.h[j]) * h2f(wv.h[j]);
            }
        }
        float o[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const float rv = res ? h2f(res[(i64)m * rcs + c + j]) : 0.0f;
            o[j] = epilogue(acc[j], bias, c + j, rv, res != 0, res_after, act, a.f[0], a.f[1]);
        }
        if (sizeof(TO) == 1) {
            union { uint2 v; i8_t q[8]; } ov;
#pragma unroll
            for (int j = 0; j < 8; ++j) ov.q[j] = f2q(o[j] * a.f[2]);
            *(uint2*)((i8_t*)y + (i64)m * ycs + c) = ov.v;
        } else {
            union { uint4 v; half_t h[8]; } ov;
#pragma unroll
            for (int j = 0; j < 8; ++j) ov.h[j] = f2h(o[j]);
            *(uint4*)((half_t*)y + (i64)m * ycs + c) = ov.v;
        }
    }
}

// ConvTranspose, NHWC. w is [K][R][S][C/groups] (host reorders ONNX's [C][K/groups][R][S]).
// i = {N,H,W,C, K,P,Q, R,S, sh,sw, ph,pw, dh,dw, groups, act}
template <typename T>
__device__ void conv_transpose_direct(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    const T* w = (const T*)a.p[1];
    const float* bias = (const float*)a.p[2];
    T* y = (T*)a.p[4];
    const int N = a.i[0], H = a.i[1], W = a.i[2], C = a.i[3], K = a.i[4], P = a.i[5], Q = a.i[6];
    const int R = a.i[7], S = a.i[8], sh = a.i[9], sw = a.i[10], ph = a.i[11], pw = a.i[12];
    const int dh = a.i[13], dw = a.i[14], groups = a.i[15], act = a.i[16];
    const int Cg = C / groups, Kg = K / groups;
    // 32-bit index math (the host keeps every tensor under 2^31 elements): 64-bit division
    // costs tens of instructions and dominated these memory-bound kernels.
    const int total = N * P * Q * K;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const int k = idx % K;
        const int m = idx / K;
        const int q = m % Q;
        const int pq = m / Q;
        const int p = pq % P;
        const int n = pq / P;
        const int c0 = (k / Kg) * Cg;
        const T* wk = w + (i64)k * R * S * Cg;
        float acc = 0.0f;
        for (int r = 0; r < R; ++r) {
            const int th = p + ph - r * dh;  // = ih * sh
            if (th < 0 || th % sh) continue;
            const int ih = th / sh;
            if (ih >= H) continue;
            for (int s = 0; s < S; ++s) {
                const int tw = q + pw - s * dw;
                if (tw < 0 || tw % sw) continue;
                const int iw = tw / sw;
                if (iw >= W) continue;
                const T* xp = x + (((i64)n * H + ih) * W + iw) * C + c0;
                const T* wp = wk + (r * S + s) * Cg;
                for (int c = 0; c < Cg; ++c) acc += ld(xp, c) * ld(wp, c);
            }
        }
        st(y, (i64)m * K + k, epilogue(acc, bias, k, 0.0f, false, 0, act, a.f[0], a.f[1]));
    }
}

#define INSTANTIATE(fn)                                                                 \
    extern "C" __global__ void fn##_f32(const KArgs a) { fn<float>(a); }                \
    extern "C" __global__ void fn##_f16(const KArgs a) { fn<half_t>(a); }

INSTANTIATE(conv_direct)
INSTANTIATE(conv_dw)
INSTANTIATE(conv_transpose_direct)
extern "C" __global__ void conv_dw_f16_i8(const KArgs a) { conv_dw<half_t, i8_t>(a); }
extern "C" __global__ void conv_dw_x8_f16(const KArgs a) { conv_dw_x8<half_t>(a); }
extern "C" __global__ void conv_dw_x8_f16_i8(const KArgs a) { conv_dw_x8<i8_t>(a); }
