// Pooling on NHWC: max / average windows (padding, dilation, count_include_pad) and global
// average, one thread per output element with the channel fastest (coalesced).
#include "common.cuh"

// p = {x, y}; i = {N,H,W,C, P,Q, R,S, sh,sw, ph,pw, dh,dw, is_max, count_include_pad,
//                  ph_end, pw_end, xcs, ycs}
// xcs / ycs: elements between pixels of x / y (== C when dense; more when x or y is a channel
// slice of a wider NHWC buffer, e.g. a zero-copy Concat's).
// V channels a thread: 1 (any type), or 8 (FP16 only: 16-byte loads and stores; the host checks
// C, xcs, ycs and the x / y element offsets are multiples of 8, buffers being 256-byte aligned).
template <int V, typename T>
__device__ void pool2d(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    T* y = (T*)a.p[1];
    const int N = a.i[0], H = a.i[1], W = a.i[2], C = a.i[3], P = a.i[4], Q = a.i[5];
    const int R = a.i[6], S = a.i[7], sh = a.i[8], sw = a.i[9], ph = a.i[10], pw = a.i[11];
    const int dh = a.i[12], dw = a.i[13], is_max = a.i[14], incl = a.i[15];
    const int phe = a.i[16], pwe = a.i[17], xcs = a.i[18], ycs = a.i[19];
    const int CV = C / V;
    const int total = N * P * Q * CV;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const NhwcPos o = nhwc_pos(idx, CV, P, Q);
        const int c = o.c * V;
        float acc[V];
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] = is_max ? -3.402823466e38f : 0.0f;
        int count = 0;
        for (int r = 0; r < R; ++r) {
            const int ih = o.p * sh - ph + r * dh;
            for (int s = 0; s < S; ++s) {
                const int iw = o.q * sw - pw + s * dw;
                const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
                if (inside) {
                    float v[V];
                    ld_vec<V>(x + (((i64)o.n * H + ih) * W + iw) * xcs + c, v);
#pragma unroll
                    for (int j = 0; j < V; ++j)
                        acc[j] = is_max ? fmaxf(acc[j], v[j]) : acc[j] + v[j];
                    ++count;
                } else if (incl && ih < H + phe && iw < W + pwe) {
                    ++count;  // a padded position inside the padded extent
                }
            }
        }
        if (!is_max) {
#pragma unroll
            for (int j = 0; j < V; ++j) acc[j] /= (float)max(count, 1);
        }
        st_vec<V>(y + (i64)o.m * ycs + c, acc);
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
    KERNEL(fn##_f32, fn<float>(a))                                                     \
    KERNEL(fn##_f16, fn<half_t>(a))

INSTANTIATE(global_avgpool)
KERNEL(pool2d_f32, pool2d<1, float>(a))
KERNEL(pool2d_f16, pool2d<1, half_t>(a))
KERNEL(pool2d_x8_f16, pool2d<8, half_t>(a))
