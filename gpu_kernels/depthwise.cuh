// One output element group (V channels of pixel o) of a depthwise convolution (groups == C ==
// K, NHWC, weights [R][S][C] so that neighbouring threads, i.e. neighbouring channels, read
// neighbouring weights), epilogue applied, times out_factor (1 / the output scale where the
// output is INT8): the body of conv_simt.cu's conv_dw and of se.cu's se_dw_pool (which also
// sums what it writes).
#pragma once
#include "common.cuh"

template <int V, typename T>
__device__ __forceinline__ void dw_point(const KArgs& a, const ConvArgs& cv, const NhwcPos& o,
                                         float (&out)[V], float out_factor = 1.0f) {
    const T* x = (const T*)a.p[0];
    const T* w = (const T*)a.p[1];
    const float* bias = (const float*)a.p[2];
    const T* res = (const T*)a.p[3];
    const int c = o.c * V;
    float acc[V];
#pragma unroll
    for (int j = 0; j < V; ++j) acc[j] = 0.0f;
    const int ih0 = o.p * cv.sh - cv.ph, iw0 = o.q * cv.sw - cv.pw;
    for (int r = 0; r < cv.R; ++r) {
        const int ih = ih0 + r * cv.dh;
        if (ih < 0 || ih >= cv.H) continue;
        const T* xrow = x + ((i64)(o.n * cv.H + ih) * cv.W) * cv.xcs + c;
        for (int s = 0; s < cv.S; ++s) {
            const int iw = iw0 + s * cv.dw;
            if (iw < 0 || iw >= cv.W) continue;
            float xv[V], wv[V];
            ld_vec<V>(xrow + (i64)iw * cv.xcs, xv);
            ld_vec<V>(w + ((r * cv.S + s) * cv.C + c), wv);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] += xv[j] * wv[j];
        }
    }
#pragma unroll
    for (int j = 0; j < V; ++j) {
        const float rv = res ? ld(res, (i64)o.m * cv.rcs + c + j) : 0.0f;
        out[j] = cv.epilogue(acc[j], bias, c + j, rv, res != 0) * out_factor;
    }
}
