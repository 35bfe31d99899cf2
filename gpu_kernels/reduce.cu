// Reductions over any set of axes, and softmax / log-softmax over any axis.
//
// The host describes a reduction as two strided loops over the input (any strides: NHWC,
// transposed or sliced views are read in place, no copy first): the kept axes (one output
// element each, in the output's row-major order) and the reduced axes; adjacent axes are merged
// on the host so most reductions are one outer x one reduced x one inner loop. Accumulation is
// in FP32 whatever the element type.
#include "common.cuh"

#define MAXR 6

// reduction codes: keep in sync with gpu_kernels/lowering/reduce.py (REDUCE_OPS)
#define R_SUM 0        // also Mean (post-scale 1/n)
#define R_MAX 1
#define R_MIN 2
#define R_PROD 3
#define R_L1 4
#define R_L2 5
#define R_SUMSQ 6
#define R_LOGSUM 7
#define R_LOGSUMEXP 8

__device__ __forceinline__ float r_identity(int op) {
    return op == R_MAX ? -__int_as_float(0x7f800000)
         : op == R_MIN ? __int_as_float(0x7f800000)
         : op == R_PROD ? 1.0f : 0.0f;
}
__device__ __forceinline__ float r_pre(int op, float x, float shift) {
    switch (op) {
        case R_L1: return fabsf(x);
        case R_L2: case R_SUMSQ: return x * x;
        case R_LOGSUMEXP: return expf(x - shift);
        default: return x;
    }
}
__device__ __forceinline__ float r_combine(int op, float a, float b) {
    switch (op) {
        case R_MAX: return fmaxf(a, b);
        case R_MIN: return fminf(a, b);
        case R_PROD: return a * b;
        default: return a + b;
    }
}
__device__ __forceinline__ float r_post(int op, float v, float scale, float shift) {
    switch (op) {
        case R_L2: return sqrtf(v);
        case R_LOGSUM: return logf(v);
        case R_LOGSUMEXP: return logf(v) + shift;
        default: return v * scale;  // Mean: 1 / n; everything else 1
    }
}

// Offset of the j-th element of a strided loop (dims / strides innermost last).
__device__ __forceinline__ i64 loop_offset(int j, int rank, const int* dims, const int* str) {
    i64 o = 0;
    for (int d = rank - 1; d >= 0; --d) {
        const int c = j % dims[d];
        j /= dims[d];
        o += (i64)c * str[d];
    }
    return o;
}

// Combine r_pre(op, x) over reduced elements j0, j0 + step, ... < nr of the run at xo, into
// acc_op's identity. One merged reduced loop (the common case) walks its stride with no
// div / mod per element.
template <typename T>
__device__ __forceinline__ float accumulate_scalar(int op, int acc_op, const T* xo, int nr,
                                                   int rr, const int* rd, const int* rs,
                                                   float shift, int j0, int step) {
    float v = r_identity(acc_op);
    if (rr != 1) {
        for (int j = j0; j < nr; j += step)
            v = r_combine(acc_op, v, r_pre(op, ld(xo, loop_offset(j, rr, rd, rs)), shift));
        return v;
    }
    const int s = rs[0];
    for (int j = j0; j < nr; j += step)
        v = r_combine(acc_op, v, r_pre(op, ld(xo, (i64)j * s), shift));
    return v;
}

template <typename T>
__device__ __forceinline__ float accumulate(int op, int acc_op, const T* xo, int nr, int rr,
                                            const int* rd, const int* rs, float shift, int j0,
                                            int step) {
    return accumulate_scalar(op, acc_op, xo, nr, rr, rd, rs, shift, j0, step);
}

// FP16 runs that are contiguous and 16-byte aligned load 8 elements at once (the alignment is
// a property of the run, so every thread of a block takes the same branch).
template <>
__device__ __forceinline__ float accumulate<half_t>(int op, int acc_op, const half_t* xo,
                                                    int nr, int rr, const int* rd,
                                                    const int* rs, float shift, int j0,
                                                    int step) {
    if (rr != 1 || rs[0] != 1 || nr % 8 != 0 || ((unsigned long long)xo & 15) != 0)
        return accumulate_scalar(op, acc_op, xo, nr, rr, rd, rs, shift, j0, step);
    float v = r_identity(acc_op);
    for (int j = 8 * j0; j < nr; j += 8 * step) {
        float e[8];
        ld_vec<8>(xo + j, e);
#pragma unroll
        for (int k = 0; k < 8; ++k) v = r_combine(acc_op, v, r_pre(op, e[k], shift));
    }
    return v;
}

__device__ __forceinline__ float warp_allreduce(int op, float v) {
    for (int o = 16; o > 0; o >>= 1) v = r_combine(op, v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide combine; every thread gets the result. blockDim.x % 32 == 0.
__device__ float block_allreduce(int op, float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_allreduce(op, v);
    __syncthreads();  // scratch may still be read from a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = scratch[0];
    for (int i = 1; i < nw; ++i) r = r_combine(op, r, scratch[i]);
    return r;
}

// p = {x, y}; i = {op, per_block, rank_k, kdims[6], kstr[6], rank_r, rdims[6], rstr[6]};
// f = {post scale}. y is dense: output element o is the o-th kept position.
// per_block = 1: a block per output, its threads striding over the reduced elements (the
// reduced axes are the input's inner ones: neighbouring threads read neighbouring elements).
// per_block = 0: a thread per output, looping over the reduced elements (the kept axes are the
// inner ones -- a mean over H, W of NHWC data -- so neighbouring threads read neighbours).
template <typename T>
__device__ void reduce_axes(const KArgs& a) {
    __shared__ float scratch[32];
    const T* x = (const T*)a.p[0];
    T* y = (T*)a.p[1];
    const int op = a.i[0], per_block = a.i[1], rk = a.i[2], rr = a.i[3 + 2 * MAXR];
    const int* kd = a.i + 3;
    const int* ks = a.i + 3 + MAXR;
    const int* rd = a.i + 4 + 2 * MAXR;
    const int* rs = a.i + 4 + 3 * MAXR;
    int nk = 1, nr = 1;
    for (int d = 0; d < rk; ++d) nk *= kd[d];
    for (int d = 0; d < rr; ++d) nr *= rd[d];
    const bool lse = op == R_LOGSUMEXP;
    const int acc_op = lse ? R_SUM : op;
    if (per_block) {
        for (int o = blockIdx.x; o < nk; o += gridDim.x) {
            const T* xo = x + loop_offset(o, rk, kd, ks);
            float shift = 0.0f;
            if (lse) {  // max first: exp never overflows
                float m = accumulate(R_MAX, R_MAX, xo, nr, rr, rd, rs, 0.0f, threadIdx.x,
                                     blockDim.x);
                m = block_allreduce(R_MAX, m, scratch);
                shift = isinf(m) ? 0.0f : m;
            }
            float v = accumulate(op, acc_op, xo, nr, rr, rd, rs, shift, threadIdx.x, blockDim.x);
            v = block_allreduce(acc_op, v, scratch);
            if (threadIdx.x == 0) st(y, o, r_post(op, v, a.f[0], shift));
        }
        return;
    }
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < nk; o += gridDim.x * blockDim.x) {
        const T* xo = x + loop_offset(o, rk, kd, ks);
        float shift = 0.0f;
        if (lse) {
            const float m = accumulate(R_MAX, R_MAX, xo, nr, rr, rd, rs, 0.0f, 0, 1);
            shift = isinf(m) ? 0.0f : m;
        }
        const float v = accumulate(op, acc_op, xo, nr, rr, rd, rs, shift, 0, 1);
        st(y, o, r_post(op, v, a.f[0], shift));
    }
}

// Softmax / log-softmax along one (merged) axis of any strides: a thread per row, three passes
// over its L elements (max, sum of exponentials, write). Used where the axis is not the last
// contiguous one (YOLO's DFL: axis 1 of [N, 16, 4, A]): neighbouring threads are neighbouring
// rows, so every pass reads memory coalesced. The last contiguous axis goes to
// softmax_lastdim (norm.cu), a block per row.
// p = {x, y}; i = {rank_k, kdims[5], kxstr[5], kystr[5], L, xstride_L, ystride_L, log}; f = {s}
template <typename T>
__device__ void softmax_axis(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    T* y = (T*)a.p[1];
    const int rk = a.i[0];
    const int* kd = a.i + 1;
    const int* kx = a.i + 6;
    const int* ky = a.i + 11;
    const int L = a.i[16], xl = a.i[17], yl = a.i[18], log_out = a.i[19];
    const float s = a.f[0];
    int nk = 1;
    for (int d = 0; d < rk; ++d) nk *= kd[d];
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < nk; o += gridDim.x * blockDim.x) {
        i64 xo = 0, yo = 0;
        int rem = o;
        for (int d = rk - 1; d >= 0; --d) {
            const int c = rem % kd[d];
            rem /= kd[d];
            xo += (i64)c * kx[d];
            yo += (i64)c * ky[d];
        }
        float mx = -__int_as_float(0x7f800000);
        for (int j = 0; j < L; ++j) mx = fmaxf(mx, s * ld(x, xo + (i64)j * xl));
        float sum = 0.0f;
        for (int j = 0; j < L; ++j) sum += expf(s * ld(x, xo + (i64)j * xl) - mx);
        const float inv = 1.0f / sum, lse = mx + logf(sum);
        for (int j = 0; j < L; ++j) {
            const float v = s * ld(x, xo + (i64)j * xl);
            st(y, yo + (i64)j * yl, log_out ? v - lse : expf(v - mx) * inv);
        }
    }
}

#define INSTANTIATE(fn)                                                                 \
    KERNEL(fn##_f32, fn<float>(a))                                                     \
    KERNEL(fn##_f16, fn<half_t>(a))

INSTANTIATE(reduce_axes)
INSTANTIATE(softmax_axis)
