// Kernels that move elements by computed indices: Pad (constant / reflect / edge / wrap) and
// Gather of rows by run-time indices (embedding lookups).
#include "common.cuh"

#define MAXR 6

// Pad: y[o] = x[src(o)] for each output position, src per axis by mode (0 constant: outside x
// is the value; 1 reflect; 2 edge; 3 wrap). A negative begin / end pad crops. x and y any
// strides (NHWC stays NHWC). p = {x, y};
// i = {rank, mode, odims[6], xdims[6], xstr[6], ystr[6], begin[6]}; f = {value}
template <typename T>
__device__ void pad_nd(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    T* y = (T*)a.p[1];
    const int rank = a.i[0], mode = a.i[1];
    const int* od = a.i + 2;
    const int* xd = a.i + 2 + MAXR;
    const int* xs = a.i + 2 + 2 * MAXR;
    const int* ys = a.i + 2 + 3 * MAXR;
    const int* beg = a.i + 2 + 4 * MAXR;
    int n = 1;
    for (int d = 0; d < rank; ++d) n *= od[d];
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += gridDim.x * blockDim.x) {
        int rem = idx;
        i64 xo = 0, yo = 0;
        bool inside = true;
        for (int d = rank - 1; d >= 0; --d) {
            const int c = rem % od[d];
            rem /= od[d];
            yo += (i64)c * ys[d];
            int s = c - beg[d];
            const int D = xd[d];
            if (s < 0 || s >= D) {
                if (mode == 0) inside = false;
                else if (mode == 1) {  // reflect without repeating the edge (period 2D - 2)
                    const int p = D > 1 ? 2 * D - 2 : 1;
                    s = ((s % p) + p) % p;
                    if (s >= D) s = p - s;
                } else if (mode == 2) s = s < 0 ? 0 : D - 1;
                else s = ((s % D) + D) % D;
            }
            xo += (i64)s * xs[d];
        }
        st(y, yo, inside ? ld(x, xo) : a.f[0]);
    }
}

// Gather along axis 0 by run-time integer indices (BERT's token embeddings): y[i, :] =
// table[idx[i], :], a negative index counting from the end, one out of range clamped (ONNX
// calls it an error; a clamp cannot fault). A thread per output element, so neighbouring
// threads copy neighbouring elements of a row.
// p = {table, idx, y}; i = {n_idx, row, V}
template <typename T, typename I>
__device__ void gather_rows(const KArgs& a) {
    const T* table = (const T*)a.p[0];
    const I* idx = (const I*)a.p[1];
    T* y = (T*)a.p[2];
    const int n = a.i[0], row = a.i[1], V = a.i[2];
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < n * row;
         e += gridDim.x * blockDim.x) {
        const int i = e / row;
        i64 r = (i64)idx[i];
        r = r < 0 ? r + V : r;
        r = r < 0 ? 0 : (r >= V ? V - 1 : r);
        y[e] = table[r * row + (e - i * row)];
    }
}

KERNEL(pad_nd_f32, pad_nd<float>(a))
KERNEL(pad_nd_f16, pad_nd<half_t>(a))
KERNEL(gather_rows_f32_i64, gather_rows<float, long long>(a))
KERNEL(gather_rows_f16_i64, gather_rows<half_t, long long>(a))
KERNEL(gather_rows_f32_i32, gather_rows<float, int>(a))
KERNEL(gather_rows_f16_i32, gather_rows<half_t, int>(a))
