// Direct (SIMT) convolution on NHWC: every group size, stride, dilation and padding; FP32 and
// FP16 storage with FP32 accumulation. It is the grouped path on every arch (one group runs the
// tiled SIMT GEMM of conv_tiled.cu or the tensor cores of conv_mma.cu).
// Also: depthwise convolution and ConvTranspose (direct, NHWC).
#include "depthwise.cuh"

// The input row (or column) i that filter tap r of output row p reads; false where there is none
// (padding, or between two strides). Convolution: i = p * stride - pad + r * dil. ConvTranspose
// scatters input i to the outputs i * stride - pad + r * dil, so gathering inverts that:
// i = (p + pad - r * dil) / stride where the division is exact. Written as single expressions
// (no early returns): NVVM then folds the test into the caller's `continue` as the hand-written
// loops did, where a returned sentinel cost ConvTranspose 8 registers.
template <bool TRANSPOSED>
__device__ __forceinline__ bool tap(int p, int r, int stride, int pad, int dil, int in, int& i) {
    if (TRANSPOSED) {
        const int t = p + pad - r * dil;  // = i * stride
        i = t >= 0 && t % stride == 0 ? t / stride : in;  // in: no input position
        return i < in;
    }
    i = p * stride - pad + r * dil;
    return i >= 0 && i < in;
}

// Convolution and ConvTranspose share one gather loop (one thread per output element, a dot
// product over the taps and the channels of the group); they differ in the tap mapping only.
// Convolution: p = {x, w[K][R][S][C/groups], bias f32 | 0, residual | 0, y}, the i of ConvArgs
// (common.cuh). ConvTranspose: w is [K][R][S][C/groups] (the host reorders ONNX's
// [C][K/groups][R][S]), no residual and i = {N,H,W,C, K,P,Q, R,S, sh,sw, ph,pw, dh,dw, groups,
// act} only: x and y are dense (pixel strides C and K).
template <typename T, bool TRANSPOSED>
__device__ void conv_gather(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    const T* w = (const T*)a.p[1];
    const float* bias = (const float*)a.p[2];
    const T* res = TRANSPOSED ? nullptr : (const T*)a.p[3];
    T* y = (T*)a.p[4];
    const ConvArgs cv = conv_args(a);
    const int xcs = TRANSPOSED ? cv.C : cv.xcs, ycs = TRANSPOSED ? cv.K : cv.ycs;
    const int Cg = cv.C / cv.groups, Kg = cv.K / cv.groups;
    const int total = cv.N * cv.P * cv.Q * cv.K;  // 32-bit index math: see common.cuh
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const NhwcPos o = nhwc_pos(idx, cv.K, cv.P, cv.Q);
        const int k = o.c;
        const int c0 = (k / Kg) * Cg;
        const T* wk = w + (i64)k * cv.R * cv.S * Cg;
        float acc = 0.0f;
        for (int r = 0; r < cv.R; ++r) {
            int ih;
            if (!tap<TRANSPOSED>(o.p, r, cv.sh, cv.ph, cv.dh, cv.H, ih)) continue;
            for (int s = 0; s < cv.S; ++s) {
                int iw;
                if (!tap<TRANSPOSED>(o.q, s, cv.sw, cv.pw, cv.dw, cv.W, iw)) continue;
                const T* xp = x + (((i64)o.n * cv.H + ih) * cv.W + iw) * xcs + c0;
                const T* wp = wk + (r * cv.S + s) * Cg;
                for (int c = 0; c < Cg; ++c) acc += ld(xp, c) * ld(wp, c);
            }
        }
        const float rv = res ? ld(res, (i64)o.m * cv.rcs + k) : 0.0f;
        st(y, (i64)o.m * ycs + k, cv.epilogue(acc, bias, k, rv, res != 0));
    }
}

template <typename T>
__device__ void conv_direct(const KArgs& a) { conv_gather<T, false>(a); }
template <typename T>
__device__ void conv_transpose_direct(const KArgs& a) { conv_gather<T, true>(a); }

// Depthwise convolution (groups == C == K), NHWC, weights [R][S][C] so that neighbouring
// threads (neighbouring channels) read neighbouring weights. Same args as conv_direct; with an
// INT8 output (TO = i8_t, feeding an INT8 convolution) f[2] = 1 / output scale.
// A thread a strip of STRIP output pixels along Q (depthwise.cuh) x V channels: 1 (any
// type), or 8 (FP16 only: 16-byte loads of x and w and one 16-byte FP16 or 8-byte INT8 store
// a pixel; the host checks that C, every pixel stride and every base offset are multiples of
// 8 elements). Channels fastest, so a warp reads whole pixels.
template <int STRIP, int V, typename T, typename TO = T>
__device__ void conv_dw(const KArgs& a) {
    TO* y = (TO*)a.p[4];
    const float out_factor = sizeof(TO) == 1 ? a.f[2] : 1.0f;
    const ConvArgs cv = conv_args(a);
    const int CV = cv.C / V, QB = (cv.Q + STRIP - 1) / STRIP;
    const int total = cv.N * cv.P * QB * CV;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += gridDim.x * blockDim.x) {
        const NhwcPos o = nhwc_pos(idx, CV, cv.P, QB);  // o.q: the strip of row (n, p)
        const int q0 = o.q * STRIP;
        float out[STRIP][V];
        dw_strip<STRIP, V, T>(a, cv, o.n, o.p, q0, o.c * V, out, out_factor);
        TO* yp = y + (((i64)o.n * cv.P + o.p) * cv.Q + q0) * cv.ycs + o.c * V;
#pragma unroll
        for (int j = 0; j < STRIP; ++j)
            if (q0 + j < cv.Q) st_vec<V>(yp + (i64)j * cv.ycs, out[j]);
    }
}

#define INSTANTIATE(fn)                                                                 \
    KERNEL(fn##_f32, fn<float>(a))                                                     \
    KERNEL(fn##_f16, fn<half_t>(a))

INSTANTIATE(conv_direct)
INSTANTIATE(conv_transpose_direct)
// each twice: strips of DW_STRIP pixels, and of one (_px1_) for grids that do not fill the GPU
#define INSTANTIATE_DW(px, strip)                                                       \
    KERNEL(conv_dw##px##_f32, conv_dw<strip, 1, float>(a))                             \
    KERNEL(conv_dw##px##_f16, conv_dw<strip, 1, half_t>(a))                            \
    KERNEL(conv_dw##px##_f16_i8, conv_dw<strip, 1, half_t, i8_t>(a))                   \
    KERNEL(conv_dw##px##_x8_f16, conv_dw<strip, 8, half_t>(a))                         \
    KERNEL(conv_dw##px##_x8_f16_i8, conv_dw<strip, 8, half_t, i8_t>(a))

INSTANTIATE_DW(, DW_STRIP)
INSTANTIATE_DW(_px1, 1)
