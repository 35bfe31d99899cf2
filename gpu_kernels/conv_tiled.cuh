// Tiled implicit-GEMM convolution on NHWC for the SIMT cores: FP32 (where tensor cores would
// change the numerics) and FP16 storage below sm_80 (Xavier has no ldmatrix / cp.async /
// m16n8k16), FP32 accumulation either way. groups == 1, any C (no alignment needed: every
// element is gathered on its own, so the RGB stem needs no padding).
//   GEMM M = N*P*Q, N = K, K = R*S*C (c fastest), as conv_mma.cu.
// A 64x64 output tile per 256-thread block, 4x4 outputs a thread; 8-deep k-tiles staged in
// shared memory (A transposed so a thread reads its 4 rows as one 16-byte load), the next
// k-tile prefetched into registers while the current one is multiplied. Same arguments as
// conv_direct (ConvArgs, common.cuh).
// Included by conv_tiled.cu (conv_tiled_f32 / _f16) and, with D2S defined, by conv_tiled_d2s.cu
// (conv_tiled_d2s_f32 / _f16: a kernel == stride ConvTranspose's GEMM stored upsampled,
// d2s.cuh): two modules, so that the ordinary one is the same code as before.
#pragma once
#include "common.cuh"
#ifdef D2S
#include "d2s.cuh"
#define CONV_TILED(t) conv_tiled_d2s_##t
#else
#define CONV_TILED(t) conv_tiled_##t
#endif

#define TBM 64
#define TBN 64
#define TBK 8

template <typename T>
__device__ void conv_tiled(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    const T* w = (const T*)a.p[1];
    const float* bias = (const float*)a.p[2];
    const T* res = (const T*)a.p[3];
    T* y = (T*)a.p[4];
    const ConvArgs cv = conv_args(a);
    const int M = cv.N * cv.P * cv.Q, Kg = cv.R * cv.S * cv.C;
    const int block_m = blockIdx.x * TBM, block_n = blockIdx.y * TBN;
    const int tid = threadIdx.x;

    __shared__ __align__(16) float As[2][TBK][TBM];
    __shared__ __align__(16) float Bs[2][TBK][TBN];

    // loader: each thread fetches 2 A and 2 B elements per k-tile, always the same k column
    const int lk = tid % TBK, lr = tid / TBK;  // lr in [0, 32)
    WindowOrigin a_org[2];
    bool a_ok[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int m = block_m + lr + 32 * i;
        a_ok[i] = m < M;
        a_org[i] = window_origin(cv, pixel_of(a_ok[i] ? m : 0, cv.P, cv.Q));
    }
    float ra[2], rb[2];
    auto fetch = [&](int kt) {
        const int kk = kt * TBK + lk;
        const bool k_ok = kk < Kg;
        const int c = k_ok ? kk % cv.C : 0, rs = k_ok ? kk / cv.C : 0;
        const int r = rs / cv.S, s = rs - r * cv.S;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int ih = a_org[i].ih0 + r * cv.dh, iw = a_org[i].iw0 + s * cv.dw;
            const bool ok = k_ok && a_ok[i] && ih >= 0 && ih < cv.H && iw >= 0 && iw < cv.W;
            ra[i] = ok ? ld(x, a_org[i].base + ((i64)ih * cv.W + iw) * cv.xcs + c) : 0.0f;
            const int kout = block_n + lr + 32 * i;
            rb[i] = (k_ok && kout < cv.K) ? ld(w, (i64)kout * Kg + kk) : 0.0f;
        }
    };
    auto stash = [&](int buf) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            As[buf][lk][lr + 32 * i] = ra[i];
            Bs[buf][lk][lr + 32 * i] = rb[i];
        }
    };

    const int tm = (tid / 16) * 4, tn = (tid % 16) * 4;  // this thread's 4x4 outputs
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    const int ktiles = (Kg + TBK - 1) / TBK;
    fetch(0);
    stash(0);
    __syncthreads();
    for (int kt = 0; kt < ktiles; ++kt) {
        const int buf = kt & 1;
        if (kt + 1 < ktiles) fetch(kt + 1);  // global loads in flight during the FMAs
#pragma unroll
        for (int k = 0; k < TBK; ++k) {
            const float4 av = *(const float4*)&As[buf][k][tm];
            const float4 bv = *(const float4*)&Bs[buf][k][tn];
            const float am[4] = {av.x, av.y, av.z, av.w}, bn[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += am[i] * bn[j];
        }
        if (kt + 1 < ktiles) stash(buf ^ 1);  // the other buffer: nobody reads it now
        __syncthreads();
    }

#ifdef D2S
    const D2sMap om(a, cv);
    i64 col_off[4];  // this thread's 4 columns: their part of the address once
#pragma unroll
    for (int j = 0; j < 4; ++j) col_off[j] = om.col(block_n + tn + j);
#endif
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = block_m + tm + i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int k = block_n + tn + j;
            if (k >= cv.K) continue;
            const float rv = res ? ld(res, (i64)m * cv.rcs + k) : 0.0f;
#ifdef D2S
            st(y, om.row(m) + col_off[j], cv.epilogue(acc[i][j], bias, k, rv, res != 0));
#else
            st(y, (i64)m * cv.ycs + k, cv.epilogue(acc[i][j], bias, k, rv, res != 0));
#endif
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) CONV_TILED(f32)(const KArgs a) {
    await_previous_kernel();
    conv_tiled<float>(a);
}
extern "C" __global__ void __launch_bounds__(256) CONV_TILED(f16)(const KArgs a) {
    await_previous_kernel();
    conv_tiled<half_t>(a);
}
