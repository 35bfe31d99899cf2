// A strip of a depthwise convolution (groups == C == K, NHWC, weights [R][S][C] so that
// neighbouring threads, i.e. neighbouring channels, read neighbouring weights): V channels of
// STRIP consecutive output pixels of one row, epilogue applied, times out_factor (1 / the
// output scale where the output is INT8). The body of conv_simt.cu's conv_dw and of se.cu's
// se_dw_pool (which also sums what it writes).
// One thread a strip rather than a pixel: each weight tap is loaded and converted once for the
// strip's outputs, a stride-1 3x3 strip loads its 6 input columns a row once instead of 3 a
// pixel, and the strip's position is decoded once. A pixel a thread re-read every tap for every
// output: ~300 instructions an output, 3-4x the memory roofline at batch 32 on the H200.
// But a strip divides the threads by its length: grids that do not fill the GPU (batch 1) take
// strips of 1 pixel, the kernels named *_px1_* (lowering/conv.py: dw_strip chooses).
#pragma once
#include "common.cuh"

#define DW_STRIP 4  // output pixels a thread where the grid fills the GPU (lowering/conv.py)

// V channels at p where inside is true, else zeros (the padding). FP16 vectors zero their 16
// bytes before the conversion, not the 8 floats after it.
template <int V, typename T>
__device__ __forceinline__ void ld_vec_or_zero(const T* p, bool inside, float (&v)[V]) {
    if (inside) {
        ld_vec<V>(p, v);
    } else {
#pragma unroll
        for (int k = 0; k < V; ++k) v[k] = 0.0f;
    }
}
template <>
__device__ __forceinline__ void ld_vec_or_zero<8, half_t>(const half_t* p, bool inside,
                                                         float (&v)[8]) {
    union { uint4 u; half_t h[8]; } t;
    t.u = inside ? *(const uint4*)p : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = h2f(t.h[j]);
}

// The taps of filter rows 0..R-1 into acc for S taps a row, stride SW and dilation 1 along W
// (the common 3x3 / 5x5, stride 1 / 2): the strip's windows span (STRIP - 1) * SW + S input
// columns a row, each loaded once (zeros outside the image) and added to every output whose
// window holds it, the row's S weights held in registers. For each output the taps add in
// (r, s) order as in the generic loop below.
template <int STRIP, int V, typename T, int S, int SW>
__device__ __forceinline__ void dw_rows(const T* x, const T* w, const ConvArgs& cv, int n, int ih0,
                                        int iw0, int c, float (&acc)[STRIP][V]) {
    constexpr int COLS = (STRIP - 1) * SW + S;
    for (int r = 0; r < cv.R; ++r) {
        const int ih = ih0 + r * cv.dh;
        if ((unsigned)ih >= (unsigned)cv.H) continue;
        // column iw0 of the row (inside the padding where iw0 < 0: read only where iw >= 0)
        const T* xrow = x + ((i64)(n * cv.H + ih) * cv.W + iw0) * cv.xcs + c;
        float wv[S][V];
#pragma unroll
        for (int s = 0; s < S; ++s) ld_vec<V>(w + (r * S + s) * cv.C + c, wv[s]);
#pragma unroll
        for (int t = 0; t < COLS; ++t) {
            float xv[V];
            ld_vec_or_zero<V>(xrow + t * cv.xcs, (unsigned)(iw0 + t) < (unsigned)cv.W, xv);
#pragma unroll
            for (int j = 0; j < STRIP; ++j) {
                const int s = t - j * SW;  // output j's tap reading column t, if any
                if (s < 0 || s >= S) continue;
#pragma unroll
                for (int k = 0; k < V; ++k) acc[j][k] += xv[k] * wv[s][k];
            }
        }
    }
}

// Any R, S, stride and dilation: each weight tap loaded once for the strip, the inputs per
// output and tap.
template <int STRIP, int V, typename T>
__device__ __forceinline__ void dw_rows_any(const T* x, const T* w, const ConvArgs& cv, int n,
                                            int ih0, int iw0, int c, float (&acc)[STRIP][V]) {
    for (int r = 0; r < cv.R; ++r) {
        const int ih = ih0 + r * cv.dh;
        if ((unsigned)ih >= (unsigned)cv.H) continue;
        const T* xrow = x + (i64)(n * cv.H + ih) * cv.W * cv.xcs + c;
        for (int s = 0; s < cv.S; ++s) {
            float wv[V];
            ld_vec<V>(w + (r * cv.S + s) * cv.C + c, wv);
#pragma unroll
            for (int j = 0; j < STRIP; ++j) {
                const int iw = iw0 + j * cv.sw + s * cv.dw;
                if ((unsigned)iw >= (unsigned)cv.W) continue;
                float xv[V];
                ld_vec<V>(xrow + (i64)iw * cv.xcs, xv);
#pragma unroll
                for (int k = 0; k < V; ++k) acc[j][k] += xv[k] * wv[k];
            }
        }
    }
}

// Output pixels (n, p, q0 + j), j < STRIP, channels c .. c + V - 1, into out[j]; the caller
// stores those with q0 + j < Q (the others, past the row's end, read no residual).
template <int STRIP, int V, typename T>
__device__ __forceinline__ void dw_strip(const KArgs& a, const ConvArgs& cv, int n, int p, int q0,
                                         int c, float (&out)[STRIP][V],
                                         float out_factor = 1.0f) {
    const T* x = (const T*)a.p[0];
    const T* w = (const T*)a.p[1];
    const float* bias = (const float*)a.p[2];
    const T* res = (const T*)a.p[3];
    float acc[STRIP][V];
#pragma unroll
    for (int j = 0; j < STRIP; ++j)
#pragma unroll
        for (int k = 0; k < V; ++k) acc[j][k] = 0.0f;
    const int ih0 = p * cv.sh - cv.ph, iw0 = q0 * cv.sw - cv.pw;
    if (cv.dw == 1 && cv.S == 3 && cv.sw == 1)
        dw_rows<STRIP, V, T, 3, 1>(x, w, cv, n, ih0, iw0, c, acc);
    else if (cv.dw == 1 && cv.S == 3 && cv.sw == 2)
        dw_rows<STRIP, V, T, 3, 2>(x, w, cv, n, ih0, iw0, c, acc);
    else if (cv.dw == 1 && cv.S == 5 && cv.sw == 1)
        dw_rows<STRIP, V, T, 5, 1>(x, w, cv, n, ih0, iw0, c, acc);
    else if (cv.dw == 1 && cv.S == 5 && cv.sw == 2)
        dw_rows<STRIP, V, T, 5, 2>(x, w, cv, n, ih0, iw0, c, acc);
    else dw_rows_any<STRIP, V, T>(x, w, cv, n, ih0, iw0, c, acc);
    const i64 m0 = ((i64)n * cv.P + p) * cv.Q + q0;
#pragma unroll
    for (int j = 0; j < STRIP; ++j) {
        const bool has_res = res && q0 + j < cv.Q;
#pragma unroll
        for (int k = 0; k < V; ++k) {
            const float rv = has_res ? ld(res, (m0 + j) * cv.rcs + c + k) : 0.0f;
            out[j][k] = cv.epilogue(acc[j][k], bias, c + k, rv, res != 0) * out_factor;
        }
    }
}
