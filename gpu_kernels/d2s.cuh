// The upsampling store of a kernel == stride transposed convolution (U-Net's 2x2 / 2) lowered as
// a 1x1 convolution (GEMM) to F*F*Ko columns (gpu_kernels/lowering/conv.py, _deconv_as_gemm):
// GEMM row m = (n*H + h)*W + w is input pixel (n, h, w); column k = (dy*F + dx)*Ko + ko goes to
// pixel (n, h*F + dy, w*F + dx), channel ko, of the [N][H*F][W*F] output whose pixels are ycs
// elements apart (a Concat's channel slice when ycs > Ko). The kernel stores there itself
// instead of leaving a depth-to-space copy to a second kernel. An element's offset is a row
// part plus a column part, so a thread that keeps its columns computes their part once.
// Used by the -DD2S builds of conv_mma.cu and conv_tiled.cuh. KArgs as ConvArgs, plus F in
// i[15] (the groups slot: these GEMMs have one group) and FastDiv by Q in i[24], i[25] (where
// ConvProblem.mma_ints puts it).
#pragma once
#include "common.cuh"

struct D2sMap {
    int f, ko, q, qf, ycs;  // q: the GEMM's Q (= W: 1x1, stride 1); qf = output width W*F
    FastDiv by_q;
    __device__ __forceinline__ D2sMap(const KArgs& a, const ConvArgs& cv)
        : f(a.i[15]), ko(cv.K / (a.i[15] * a.i[15])), q(cv.Q), qf(cv.Q * a.i[15]), ycs(cv.ycs),
          by_q{(unsigned)a.i[24], a.i[25]} {}
    __device__ __forceinline__ i64 row(int m) const {
        const int nh = by_q.div(m);  // n*H + h: output row (n, h*F)
        return ((i64)nh * f * qf + (m - nh * q) * f) * ycs;
    }
    __device__ __forceinline__ i64 col(int k) const {
        const int g = k / ko, dy = g / f;
        return (i64)(dy * qf + g - dy * f) * ycs + (k - g * ko);
    }
    __device__ __forceinline__ i64 at(int m, int k) const { return row(m) + col(k); }
    // 8 columns from a multiple of 8 stay in one (dy, dx) group: one vector store
    __device__ __forceinline__ bool chunks_of_8() const { return ko % 8 == 0; }
};
