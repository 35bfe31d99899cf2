// Resize on NHWC: nearest and (bi)linear, with ONNX's coordinate transformation modes.
#include "common.cuh"

// coordinate transformation: 0 half_pixel, 1 asymmetric, 2 align_corners, 3 pytorch_half_pixel
__device__ __forceinline__ float src_coord(int o, int in, int out, float scale, int ctm) {
    switch (ctm) {
        case 1: return o / scale;
        case 2: return out > 1 ? o * (float)(in - 1) / (float)(out - 1) : 0.0f;
        case 3: return out > 1 ? (o + 0.5f) / scale - 0.5f : 0.0f;
        default: return (o + 0.5f) / scale - 0.5f;
    }
}

// nearest mode: 0 round_prefer_floor, 1 round_prefer_ceil, 2 floor, 3 ceil
__device__ __forceinline__ int nearest(float v, int mode, int in) {
    int r;
    switch (mode) {
        case 1: r = (int)floorf(v + 0.5f); break;
        case 2: r = (int)floorf(v); break;
        case 3: r = (int)ceilf(v); break;
        default: r = (v - floorf(v) == 0.5f) ? (int)floorf(v) : (int)floorf(v + 0.5f); break;
    }
    return min(max(r, 0), in - 1);
}

// p = {x, y}; i = {N,H,W,C, P,Q, linear, ctm, nearest_mode, xcs, ycs}; f = {scale_h, scale_w}
// xcs / ycs: elements between pixels of x / y (== C when dense; more when x or y is a channel
// slice of a wider NHWC buffer, e.g. a zero-copy Concat's).
template <typename T>
__device__ void resize_nhwc(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    T* y = (T*)a.p[1];
    const int N = a.i[0], H = a.i[1], W = a.i[2], C = a.i[3], P = a.i[4], Q = a.i[5];
    const int linear = a.i[6], ctm = a.i[7], nmode = a.i[8], xcs = a.i[9], ycs = a.i[10];
    const float sh = a.f[0], sw = a.f[1];
    const int total = N * P * Q * C;  // 32-bit index math: see common.cuh
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const NhwcPos o = nhwc_pos(idx, C, P, Q);
        const float fy = src_coord(o.p, H, P, sh, ctm), fx = src_coord(o.q, W, Q, sw, ctm);
        const T* xn = x + (i64)o.n * H * W * xcs + o.c;
        float v;
        if (!linear) {
            v = ld(xn, ((i64)nearest(fy, nmode, H) * W + nearest(fx, nmode, W)) * xcs);
        } else {
            const float cy = fminf(fmaxf(fy, 0.0f), (float)(H - 1));
            const float cx = fminf(fmaxf(fx, 0.0f), (float)(W - 1));
            const int y0 = (int)floorf(cy), x0 = (int)floorf(cx);
            const int y1 = min(y0 + 1, H - 1), x1 = min(x0 + 1, W - 1);
            const float wy = cy - y0, wx = cx - x0;
            const float v00 = ld(xn, ((i64)y0 * W + x0) * xcs);
            const float v01 = ld(xn, ((i64)y0 * W + x1) * xcs);
            const float v10 = ld(xn, ((i64)y1 * W + x0) * xcs);
            const float v11 = ld(xn, ((i64)y1 * W + x1) * xcs);
            v = (1 - wy) * ((1 - wx) * v00 + wx * v01) + wy * ((1 - wx) * v10 + wx * v11);
        }
        st(y, (i64)o.m * ycs + o.c, v);
    }
}

// Nearest, FP16, 8 channels a thread: one 16-byte load and one 16-byte store per thread, the
// source pixel computed once per 8 channels (a scalar thread per element spent ~10x the memory
// time of YOLO's 2x upsamples on index math). The lowering makes sure that C, both pixel
// strides and both pointers are multiples of 8 elements. Thread -> element mapping: thread t
// takes channels [8 (t % (C / 8)), +8) of output pixel t / (C / 8), so a warp writes 512
// contiguous bytes of a dense output. Same p / i / f as resize_nhwc (linear must be 0).
__device__ void resize_nearest_x8(const KArgs& a) {
    const half_t* x = (const half_t*)a.p[0];
    half_t* y = (half_t*)a.p[1];
    const int N = a.i[0], H = a.i[1], W = a.i[2], C = a.i[3], P = a.i[4], Q = a.i[5];
    const int ctm = a.i[7], nmode = a.i[8], xcs = a.i[9], ycs = a.i[10];
    const float sh = a.f[0], sw = a.f[1];
    const int c8s = C / 8;
    const int total = N * P * Q * c8s;  // 32-bit index math: see common.cuh
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const int m = idx / c8s, c8 = idx - m * c8s;  // m: output pixel (n, p, q)
        const int q = m % Q, np_ = m / Q, p = np_ % P, n = np_ / P;
        const int h = nearest(src_coord(p, H, P, sh, ctm), nmode, H);
        const int w = nearest(src_coord(q, W, Q, sw, ctm), nmode, W);
        const uint4 v = *(const uint4*)(x + (((i64)n * H + h) * W + w) * xcs + c8 * 8);
        *(uint4*)(y + (i64)m * ycs + c8 * 8) = v;
    }
}

KERNEL(resize_nhwc_f32, resize_nhwc<float>(a))
KERNEL(resize_nhwc_x8_f16, resize_nearest_x8(a))
KERNEL(resize_nhwc_f16, resize_nhwc<half_t>(a))
