// Kernels that move elements by computed indices: Pad (constant / reflect / edge / wrap),
// Gather of rows by run-time indices (embedding lookups) and GridSample.
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

// GridSample (opset 16), 2-D: y[n, c, i, j] samples x[n, c] at the grid's normalised (x, y) in
// [-1, 1] of grid[n, i, j], bilinear or nearest (half to even), outside read as 0 (zeros) or
// clamped (border). A thread per output element, channels fastest: on NHWC data neighbouring
// threads read neighbouring channels of the same taps. Any strides for x, grid and y.
// p = {x, grid, y}; i = {N, C, H, W, Ho, Wo, xs[4], gs[4], ys[4], nearest, border, align}
template <typename T>
__device__ __forceinline__ float grid_tap(const T* x, i64 base, int h, int w, int H, int W,
                                          int xh, int xw, bool border) {
    if (border) {
        h = min(max(h, 0), H - 1);
        w = min(max(w, 0), W - 1);
    } else if (h < 0 || h >= H || w < 0 || w >= W) {
        return 0.0f;
    }
    return ld(x, base + (i64)h * xh + (i64)w * xw);
}

template <typename T>
__device__ void grid_sample(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    const T* grid = (const T*)a.p[1];
    T* y = (T*)a.p[2];
    const int N = a.i[0], C = a.i[1], H = a.i[2], W = a.i[3], Ho = a.i[4], Wo = a.i[5];
    const int* xs = a.i + 6;
    const int* gs = a.i + 10;
    const int* ys = a.i + 14;
    const bool nearest = a.i[18], border = a.i[19], align = a.i[20];
    const int n_out = N * Ho * Wo * C;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < n_out;
         e += gridDim.x * blockDim.x) {
        const int c = e % C, pix = e / C;
        const int j = pix % Wo, i = (pix / Wo) % Ho, n = pix / (Wo * Ho);
        const i64 g = (i64)n * gs[0] + (i64)i * gs[1] + (i64)j * gs[2];
        const float gx = ld(grid, g), gy = ld(grid, g + gs[3]);
        // normalised [-1, 1] to pixel coordinates (pixel centres at integers)
        float fx = align ? (gx + 1.0f) * 0.5f * (W - 1) : ((gx + 1.0f) * W - 1.0f) * 0.5f;
        float fy = align ? (gy + 1.0f) * 0.5f * (H - 1) : ((gy + 1.0f) * H - 1.0f) * 0.5f;
        if (border) {  // border padding clamps the coordinate itself
            fx = fminf(fmaxf(fx, 0.0f), (float)(W - 1));
            fy = fminf(fmaxf(fy, 0.0f), (float)(H - 1));
        }
        const i64 base = (i64)n * xs[0] + (i64)c * xs[1];
        float v;
        if (nearest) {
            v = grid_tap(x, base, (int)rintf(fy), (int)rintf(fx), H, W, xs[2], xs[3], border);
        } else {
            const float x0f = floorf(fx), y0f = floorf(fy);
            const int x0 = (int)x0f, y0 = (int)y0f;
            const float dx = fx - x0f, dy = fy - y0f;
            v = (1.0f - dy) * ((1.0f - dx) * grid_tap(x, base, y0, x0, H, W, xs[2], xs[3], border)
                               + dx * grid_tap(x, base, y0, x0 + 1, H, W, xs[2], xs[3], border))
                + dy * ((1.0f - dx) * grid_tap(x, base, y0 + 1, x0, H, W, xs[2], xs[3], border)
                        + dx * grid_tap(x, base, y0 + 1, x0 + 1, H, W, xs[2], xs[3], border));
        }
        st(y, (i64)n * ys[0] + (i64)c * ys[1] + (i64)i * ys[2] + (i64)j * ys[3], v);
    }
}

KERNEL(grid_sample_f32, grid_sample<float>(a))
KERNEL(grid_sample_f16, grid_sample<half_t>(a))
KERNEL(pad_nd_f32, pad_nd<float>(a))
KERNEL(pad_nd_f16, pad_nd<half_t>(a))
KERNEL(gather_rows_f32_i64, gather_rows<float, long long>(a))
KERNEL(gather_rows_f16_i64, gather_rows<half_t, long long>(a))
KERNEL(gather_rows_f32_i32, gather_rows<float, int>(a))
KERNEL(gather_rows_f16_i32, gather_rows<half_t, int>(a))
