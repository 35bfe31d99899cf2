// Batched matrix product for two run-time operands (attention's Q.K^T and P.V), FP32
// accumulation, 32x32 shared-memory tiles. GEMMs with a constant weight go through the
// convolution kernels as 1x1 convolutions instead (tensor cores, fused epilogue).
#include "common.cuh"

#define TILE 32

// C[b] = act(A[b] (MxK) @ B[b] (KxN) + bias[n]); batch strides may be 0 (broadcast).
// p = {A, B, bias f32 | 0, C}; i = {batch, M, N, K, lda, ldb, ldc, sa, sb, sc, act,
//      a_trans, b_trans}  (a_trans: A stored KxM; b_trans: B stored NxK)
template <typename T>
__device__ void bmm(const KArgs& a) {
    __shared__ float As[TILE][TILE + 1];
    __shared__ float Bs[TILE][TILE + 1];
    const int M = a.i[1], N = a.i[2], K = a.i[3];
    const int lda = a.i[4], ldb = a.i[5], ldc = a.i[6], act = a.i[10];
    const int at = a.i[11], bt = a.i[12];
    const int b = blockIdx.z;
    const T* A = (const T*)a.p[0] + (i64)b * a.i[7];
    const T* B = (const T*)a.p[1] + (i64)b * a.i[8];
    const float* bias = (const float*)a.p[2];
    T* Cm = (T*)a.p[3] + (i64)b * a.i[9];
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
            st(Cm, (i64)m * ldc + n, epilogue(acc[j], bias, n, 0.0f, false, 0, act, a.f[0], a.f[1]));
    }
}

extern "C" __global__ void bmm_f32(const KArgs a) { bmm<float>(a); }
extern "C" __global__ void bmm_f16(const KArgs a) { bmm<half_t>(a); }
