// Batched matrix product for two run-time operands (attention's Q.K^T and P.V), FP32
// accumulation, 32x32 shared-memory tiles. GEMMs with a constant weight go through the
// convolution kernels as 1x1 convolutions instead (tensor cores, fused epilogue).
#include "common.cuh"

#define TILE 32

// C[b] = act(alpha A[b] (MxK) @ B[b] (KxN) + bias[n]). The batch index b = bo * inner + bi has two
// levels, each with its own stride per operand (0 = broadcast), so attention's head axis and
// batch axis are read and written in place even where they do not merge into one stride.
// p = {A, B, bias f32 | 0, C}; i = {batch, M, N, K, lda, ldb, ldc, sa, sb, sc, act,
//      a_trans, b_trans, inner, sa_inner, sb_inner, sc_inner}; f = {act a, act b, alpha}
//      (a_trans: A stored KxM; b_trans: B stored NxK; sa..sc: outer strides)
template <typename T>
__device__ void bmm(const KArgs& a) {
    __shared__ float As[TILE][TILE + 1];
    __shared__ float Bs[TILE][TILE + 1];
    const int M = a.i[1], N = a.i[2], K = a.i[3];
    const int lda = a.i[4], ldb = a.i[5], ldc = a.i[6], act = a.i[10];
    const int at = a.i[11], bt = a.i[12];
    const int bo = blockIdx.z / a.i[13], bi = blockIdx.z % a.i[13];
    const T* A = (const T*)a.p[0] + (i64)bo * a.i[7] + (i64)bi * a.i[14];
    const T* B = (const T*)a.p[1] + (i64)bo * a.i[8] + (i64)bi * a.i[15];
    const float* bias = (const float*)a.p[2];
    T* Cm = (T*)a.p[3] + (i64)bo * a.i[9] + (i64)bi * a.i[16];
    const int tx = threadIdx.x % TILE, ty = threadIdx.x / TILE;  // 32 x 8 threads
    const int row0 = blockIdx.y * TILE, col0 = blockIdx.x * TILE;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k0 = 0; k0 < K; k0 += TILE) {
        for (int r = ty; r < TILE; r += 8) {
            const int m = row0 + r, k = k0 + tx;
            As[r][tx] = (m < M && k < K) ? ld(A, at ? (i64)k * lda + m : (i64)m * lda + k) : 0.0f;
            const int kb = k0 + r, n = col0 + tx;
            Bs[r][tx] = (kb < K && n < N) ? ld(B, bt ? (i64)n * ldb + kb : (i64)kb * ldb + n)
                                          : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < TILE; ++kk) {
            const float bv = Bs[kk][tx];
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[j] += As[ty + 8 * j][kk] * bv;
        }
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int m = row0 + ty + 8 * j, n = col0 + tx;
        if (m < M && n < N)
            st(Cm, (i64)m * ldc + n,
               epilogue(acc[j] * a.f[2], bias, n, 0.0f, false, 0, act, a.f[0], a.f[1]));
    }
}

KERNEL(bmm_f32, bmm<float>(a))
KERNEL(bmm_f16, bmm<half_t>(a))
