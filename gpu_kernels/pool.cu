// Pooling on NHWC: max / average windows (padding, dilation, count_include_pad) and global
// average, one thread per output element with the channel fastest (coalesced).
#include "common.cuh"

// p = {x, y}; i = {N,H,W,C, P,Q, R,S, sh,sw, ph,pw, dh,dw, is_max, count_include_pad,
//                  ph_end, pw_end}
template <typename T>
__device__ void pool2d(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    T* y = (T*)a.p[1];
    const int N = a.i[0], H = a.i[1], W = a.i[2], C = a.i[3], P = a.i[4], Q = a.i[5];
    const int R = a.i[6], S = a.i[7], sh = a.i[8], sw = a.i[9], ph = a.i[10], pw = a.i[11];
    const int dh = a.i[12], dw = a.i[13], is_max = a.i[14], incl = a.i[15];
    const int phe = a.i[16], pwe = a.i[17];
    const int total = N * P * Q * C;  // 32-bit index math: see conv_simt.cu
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const int c = idx % C;
        const int m = idx / C;
        const int q = m % Q, pq = m / Q, p = pq % P, n = pq / P;
        float acc = is_max ? -3.402823466e38f : 0.0f;
        int count = 0;
        for (int r = 0; r < R; ++r) {
            const int ih = p * sh - ph + r * dh;
            for (int s = 0; s < S; ++s) {
                const int iw = q * sw - pw + s * dw;
                const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
                if (inside) {
                    const float v = ld(x, (((i64)n * H + ih) * W + iw) * C + c);
                    acc = is_max ? fmaxf(acc, v) : acc + v;
                    ++count;
                } else if (incl && ih < H + phe && iw < W + pwe) {
                    ++count;  // a padded position inside the padded extent
                }
            }
        }
        if (!is_max) acc /= (float)max(count, 1);
        st(y, idx, acc);
    }
}

// pool2d with 8 channels per thread (16-byte loads and stores), FP16, C % 8 == 0 (dense NHWC
// buffers are 256-byte aligned). Same args as pool2d.
__device__ void pool2d_x8(const KArgs& a) {
    const half_t* x = (const half_t*)a.p[0];
    half_t* y = (half_t*)a.p[1];
    const int N = a.i[0], H = a.i[1], W = a.i[2], C = a.i[3], P = a.i[4], Q = a.i[5];
    const int R = a.i[6], S = a.i[7], sh = a.i[8], sw = a.i[9], ph = a.i[10], pw = a.i[11];
    const int dh = a.i[12], dw = a.i[13], is_max = a.i[14], incl = a.i[15];
    const int phe = a.i[16], pwe = a.i[17];
    const int C8 = C / 8;
    const int total = N * P * Q * C8;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const int c = (idx % C8) * 8;
        const int m = idx / C8;
        const int q = m % Q, pq = m / Q, p = pq % P, n = pq / P;
        float acc[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[j] = is_max ? -3.402823466e38f : 0.0f;
        int count = 0;
        for (int r = 0; r < R; ++r) {
            const int ih = p * sh - ph + r * dh;
            for (int s = 0; s < S; ++s) {
                const int iw = q * sw - pw + s * dw;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                    union { uint4 v; half_t h[8]; } xv;
                    xv.v = *(const uint4*)(x + (((i64)n * H + ih) * W + iw) * C + c);
#pragma unroll
                    for (int j = 0; j < 8; ++j) {
                        const float v = h2f(xv.h[j]);
                        acc[j] = is_max ? fmaxf(acc[j], v) : acc[j] + v;
                    }
                    ++count;
                } else if (incl && ih < H + phe && iw < W + pwe) {
                    ++count;
                }
            }
        }
        union { uint4 v; half_t h[8]; } ov;
#pragma unroll
        for (int j = 0; j < 8; ++j) ov.h[j] = f2h(is_max ? acc[j] : acc[j] / (float)max(count, 1));
        *(uint4*)(y + (i64)m * C + c) = ov.v;
    }
}

// Global average over H*W for each (n, c). p = {x, y}; i = {N, HW, C}
template <typename T>
__device__ void global_avgpool(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    T* y = (T*)a.p[1];
    const int N = a.i[0], HW = a.i[1], C = a.i[2];
    const int total = N * C;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const int c = idx % C;
        const i64 n = idx / C;
        const T* xp = x + n * HW * C + c;
        float acc = 0.0f;
        for (int i = 0; i < HW; ++i) acc += ld(xp, (i64)i * C);
        st(y, idx, acc / (float)HW);
    }
}

#define INSTANTIATE(fn)                                                                 \
    extern "C" __global__ void fn##_f32(const KArgs a) { fn<float>(a); }                \
    extern "C" __global__ void fn##_f16(const KArgs a) { fn<half_t>(a); }

INSTANTIATE(pool2d)
INSTANTIATE(global_avgpool)
extern "C" __global__ void pool2d_x8_f16(const KArgs a) { pool2d_x8(a); }
