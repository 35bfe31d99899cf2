// Element-wise kernels: fused chains of activations / broadcasting arithmetic (standalone
// BatchNormalization too), and one strided copy that does transpose, slice, concat-into-place,
// NCHW<->NHWC reformat, FP32<->FP16 casts and INT8 (de)quantisation.
#include "common.cuh"

#define MAXR 6

#define OP_ADD 0
#define OP_SUB 1
#define OP_MUL 2
#define OP_DIV 3
#define OP_POW 4
#define OP_MAX 5
#define OP_MIN 6
#define OP_FMOD 7  // float Mod: C's fmod (ONNX: floats take fmod = 1), the dividend's sign
#define OP_EQ 8    // comparisons and logic give 1 or 0 (a bool tensor inside a segment)
#define OP_LT 9
#define OP_GT 10
#define OP_LE 11
#define OP_GE 12
#define OP_AND 13
#define OP_OR 14

__device__ __forceinline__ float binop(int op, float u, float v) {
    switch (op) {
        case OP_ADD: return u + v;
        case OP_SUB: return u - v;
        case OP_MUL: return u * v;
        case OP_DIV: return u / v;
        case OP_POW: return v == 2.0f ? u * u : powf(u, v);  // x^2 (YOLO boxes) stays exact
        case OP_MAX: return fmaxf(u, v);
        case OP_MIN: return fminf(u, v);
        case OP_FMOD: return fmodf(u, v);
        case OP_EQ: return u == v ? 1.0f : 0.0f;
        case OP_LT: return u < v ? 1.0f : 0.0f;
        case OP_GT: return u > v ? 1.0f : 0.0f;
        case OP_LE: return u <= v ? 1.0f : 0.0f;
        case OP_GE: return u >= v ? 1.0f : 0.0f;
        case OP_AND: return (u != 0.0f && v != 0.0f) ? 1.0f : 0.0f;
        default: return (u != 0.0f || v != 0.0f) ? 1.0f : 0.0f;  // OP_OR
    }
}

// A chain of element-wise layers as one kernel: a small register program, interpreted per
// element, over up to FUSED_IN strided inputs (stride 0 where broadcast) and one strided
// output -- so activations, broadcasting arithmetic, views (transpose, slice) and writing into a
// concat slice cost one pass over memory instead of one kernel per layer. The inputs are read
// (and the program computed) in T, the output written as TO: a chain that ends in an FP32 graph
// output writes it itself, with no conversion pass after it.
// p = {descriptor, y, x0 .. x5}; i = {rank, inputs, ops, pieces}
// descriptor (int32, in the weight arena): shape[6], ystride[6], xstride[inputs][6],
// then per op {code, a, b, c}; op j writes register inputs + j; the last register is y.
//   code 0..15  r[a] OP r[b]                 (OP_* above)
//   code 16..31 r[a] OP imm, imm = bits b
//   code 32..47 imm OP r[a], imm = bits b
//   code 48     r[a] != 0 ? r[b] : r[c]      (Where)
//   code 64+act activate(r[a], alpha = bits b, beta = bits c)
// pieces > 0: a Concat of chains in one kernel (YOLO's xy / wh / conf, each its own program):
// after xstride, cstride[6] (the loop strides of the coordinate along the Concat axis: 1 on
// its loop dim, 0 elsewhere); after the ops, per piece {end, op_end, result} (the piece holds
// the elements whose coordinate is below end and at least the previous piece's; it runs ops
// [previous op_end, op_end) and y is register result); then per input {shift, mask}: input j
// is read at x_j + offset + shift, and only for elements of the pieces in bit mask. Registers
// are numbered as for one program; an input may serve several pieces.
//
// Thread -> element mapping: each thread takes FUSED_V consecutive elements of the loop (the
// lowering orders it by the output's memory order, innermost contiguous, and merges
// contiguous neighbours), so the division-heavy index decomposition runs once per FUSED_V
// elements and the rest step an odometer (an add per operand; a carry at a row's end); each
// instruction is decoded once and applied to the FUSED_V elements (of a Concat's pieces, only
// those present among them run). A warp's loads and stores cover 32 x FUSED_V neighbouring
// elements. Offsets are 32-bit: every buffer and constant holds fewer than 2^31 elements
// (Lowering.new_value refuses larger), so no view reaches past that.
#define FUSED_IN 6
#define FUSED_OPS 24
#define FUSED_V 4
#define FUSED_PIECES 8

// op applied to FUSED_V lanes, the dispatch once: the common cases stay branch-free per lane
__device__ __forceinline__ void binop_v(int op, const float* u, const float* v, float* o) {
    switch (op) {
        case OP_ADD:
#pragma unroll
            for (int k = 0; k < FUSED_V; ++k) o[k] = u[k] + v[k];
            return;
        case OP_MUL:
#pragma unroll
            for (int k = 0; k < FUSED_V; ++k) o[k] = u[k] * v[k];
            return;
        default:
#pragma unroll
            for (int k = 0; k < FUSED_V; ++k) o[k] = binop(op, u[k], v[k]);
    }
}

__device__ __forceinline__ void binop_imm_v(int op, const float* u, float imm, bool left,
                                            float* o) {
    if (!left && op == OP_MUL) {
#pragma unroll
        for (int k = 0; k < FUSED_V; ++k) o[k] = u[k] * imm;
    } else if (op == OP_ADD) {
#pragma unroll
        for (int k = 0; k < FUSED_V; ++k) o[k] = u[k] + imm;
    } else if (!left && op == OP_POW && imm == 2.0f) {  // x^2 (YOLO boxes) stays exact
#pragma unroll
        for (int k = 0; k < FUSED_V; ++k) o[k] = u[k] * u[k];
    } else {
#pragma unroll
        for (int k = 0; k < FUSED_V; ++k) o[k] = left ? binop(op, imm, u[k]) : binop(op, u[k], imm);
    }
}

__device__ __forceinline__ void activate_v(int act, const float* u, float al, float be,
                                           float* o) {
    if (act == ACT_SIGMOID) {
#pragma unroll
        for (int k = 0; k < FUSED_V; ++k) o[k] = sigmoidf_(u[k]);
    } else if (act == ACT_SILU) {
#pragma unroll
        for (int k = 0; k < FUSED_V; ++k) o[k] = u[k] * sigmoidf_(u[k]);
    } else {
#pragma unroll
        for (int k = 0; k < FUSED_V; ++k) o[k] = activate(u[k], act, al, be);
    }
}

template <typename T, typename TO>
__device__ void fused(const KArgs& a) {
    __shared__ int d[MAXR * (3 + FUSED_IN) + 4 * FUSED_OPS + 3 * FUSED_PIECES + 2 * FUSED_IN];
    const int rank = a.i[0], nin = a.i[1], nops = a.i[2], np = a.i[3];
    const int pieces = np > 0 ? np : 1;
    const int* desc = (const int*)a.p[0];
    const int* istride = d + 2 * MAXR;
    const int* cstride = d + MAXR * (2 + nin);  // pieces only
    const int* ops = cstride + (np > 0 ? MAXR : 0);
    const int* ptab = ops + 4 * nops;  // per piece {end, op_end, result}
    const int* ltab = ptab + 3 * pieces;  // per input {shift, mask}
    const int total = np > 0 ? (int)(ltab - d) + 2 * nin : (int)(ptab - d);
    for (int t = threadIdx.x; t < total; t += blockDim.x) d[t] = desc[t];
    if (np == 0 && threadIdx.x == 0) {  // one program: one piece over everything
        int* pt = d + total;
        pt[0] = 0x7fffffff;
        pt[1] = nops;
        pt[2] = nin + nops - 1;
        for (int j = 0; j < nin; ++j) pt[3 + 2 * j] = 0, pt[4 + 2 * j] = 1;
    }
    __syncthreads();
    TO* y = (TO*)a.p[1];
    const T* x[FUSED_IN];
#pragma unroll
    for (int j = 0; j < FUSED_IN; ++j) x[j] = (const T*)a.p[2 + j];
    const int last = rank - 1;
    const int inner = d[last];
    const int cs_inner = np > 0 ? cstride[last] : 0;
    int n = 1;  // 32-bit index math: see common.cuh
    for (int k = 0; k < rank; ++k) n *= d[k];
    const int step = gridDim.x * blockDim.x * FUSED_V;  // <= 2^29: grid1d caps the grid
    for (int base = (blockIdx.x * blockDim.x + threadIdx.x) * FUSED_V; base < n;
         base = base < n - step ? base + step : n) {  // no signed overflow near 2^31
        // loop coordinates of the first element: c_inner along the innermost loop dim; co the
        // coordinate along a Concat's axis (pieces)
        int rem = base / inner, c_inner = base - rem * inner;
        int yo = c_inner * d[MAXR + last], co = c_inner * cs_inner, xo[FUSED_IN];
#pragma unroll
        for (int j = 0; j < FUSED_IN; ++j) xo[j] = j < nin ? c_inner * istride[j * MAXR + last] : 0;
        for (int k = last - 1; k >= 0; --k) {
            const int q = rem / d[k], c = rem - q * d[k];
            rem = q;
            yo += c * d[MAXR + k];
            if (np > 0) co += c * cstride[k];
#pragma unroll
            for (int j = 0; j < FUSED_IN; ++j)
                if (j < nin) xo[j] += c * istride[j * MAXR + k];
        }
        const int cnt = min(FUSED_V, n - base);
        float r[FUSED_IN + FUSED_OPS][FUSED_V];
        int yoff[FUSED_V], pv[FUSED_V];
        int pmin = pieces, pmax = 0;
#pragma unroll
        for (int v = 0; v < FUSED_V; ++v) {
            yoff[v] = yo;
            int p = 0;
            while (p + 1 < pieces && co >= ptab[3 * p]) ++p;
            pv[v] = p;
            if (v < cnt) pmin = min(pmin, p), pmax = max(pmax, p);
#pragma unroll
            for (int j = 0; j < FUSED_IN; ++j)
                if (j < nin) {
                    if (np == 0)  // one program: every input, unshifted
                        r[j][v] = v < cnt ? ld(x[j], xo[j]) : 0.0f;
                    else
                        r[j][v] = v < cnt && (ltab[2 * j + 1] >> p & 1)
                            ? ld(x[j], xo[j] + ltab[2 * j]) : 0.0f;
                }
            if (v + 1 < cnt) {  // step to the next element: the innermost dim, else a carry
                if (++c_inner < inner) {
                    yo += d[MAXR + last];
                    co += cs_inner;
#pragma unroll
                    for (int j = 0; j < FUSED_IN; ++j)
                        if (j < nin) xo[j] += istride[j * MAXR + last];
                } else {  // a row ends (rare but for tiny inner dims): decompose afresh
                    c_inner = 0;
                    int e = base + v + 1;
                    yo = 0;
                    co = 0;
#pragma unroll
                    for (int j = 0; j < FUSED_IN; ++j) xo[j] = 0;
                    for (int k = last; k >= 0; --k) {
                        const int q = e / d[k], c = e - q * d[k];
                        e = q;
                        yo += c * d[MAXR + k];
                        if (np > 0) co += c * cstride[k];
#pragma unroll
                        for (int j = 0; j < FUSED_IN; ++j)
                            if (j < nin) xo[j] += c * istride[j * MAXR + k];
                    }
                }
            }
        }
        for (int j = pmin > 0 ? ptab[3 * pmin - 2] : 0; j < ptab[3 * pmax + 1]; ++j) {
            const int* o = ops + 4 * j;
            const int code = o[0];
            float* out = r[nin + j];
            if (code < 16) binop_v(code, r[o[1]], r[o[2]], out);
            else if (code < 48) binop_imm_v(code & 15, r[o[1]], __int_as_float(o[2]), code >= 32,
                                            out);
            else if (code == 48) {
#pragma unroll
                for (int k = 0; k < FUSED_V; ++k)
                    out[k] = r[o[1]][k] != 0.0f ? r[o[2]][k] : r[o[3]][k];
            } else activate_v(code - 64, r[o[1]], __int_as_float(o[2]), __int_as_float(o[3]), out);
        }
#pragma unroll
        for (int v = 0; v < FUSED_V; ++v)
            if (v < cnt) st(y, yoff[v], r[ptab[3 * pv[v] + 2]][v]);
    }
}

// y[yo(idx)] = x[xo(idx)] * f[0] over a shape of up to 6 dims, both sides strided. The factor
// makes the same kernel quantise (1/scale into INT8) and dequantise (scale out of INT8).
// p = {x, y}; i = {rank, shape[6], xstride[6], ystride[6]}; f = {factor}
template <typename TI, typename TO>
__device__ void copy_strided(const KArgs& a) {
    const TI* x = (const TI*)a.p[0];
    TO* y = (TO*)a.p[1];
    const int rank = a.i[0];
    const int* shape = a.i + 1;
    const int* xs = a.i + 1 + MAXR;
    const int* ys = a.i + 1 + 2 * MAXR;
    const float factor = a.f[0];
    int n = 1;
    for (int d = 0; d < rank; ++d) n *= shape[d];
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += gridDim.x * blockDim.x) {
        int rem = idx;
        i64 xo = 0, yo = 0;
        for (int d = rank - 1; d >= 0; --d) {
            const int c = rem % shape[d];
            rem /= shape[d];
            xo += (i64)c * xs[d];
            yo += (i64)c * ys[d];
        }
        st(y, yo, factor == 1.0f ? ld(x, xo) : ld(x, xo) * factor);
    }
}

// The input of a strided convolution with few channels (an RGB stem), rearranged so that the
// convolution becomes a stride-1 one over C*s*s channels that tensor cores take densely:
// y[n, u, v, (bh * s + bw) * C + c] = x[n, c, u * s + bh - pad_h, v * s + bw - pad_w], zero
// outside x and in the channels past C*s*s (padding up to cp, a multiple of 8).
// One thread per output pixel, 16-byte stores: neighbouring threads read neighbouring input
// columns of each channel plane.
// x plain NCHW, y NHWC FP16. p = {x, y}; i = {N, C, H, W, s, pad_h, pad_w, U, V, cp}
template <typename TI>
__device__ void space_to_depth(const KArgs& a) {
    const TI* x = (const TI*)a.p[0];
    uint4* y = (uint4*)a.p[1];
    const int C = a.i[1], H = a.i[2], W = a.i[3], s = a.i[4], ph = a.i[5], pw = a.i[6];
    const int U = a.i[7], V = a.i[8], cp = a.i[9];
    const int n = a.i[0] * U * V;
    for (int pix = blockIdx.x * blockDim.x + threadIdx.x; pix < n;
         pix += gridDim.x * blockDim.x) {
        const int v = pix % V, u = (pix / V) % U, b = pix / (V * U);
        for (int c8 = 0; c8 < cp; c8 += 8) {
            union { uint4 q; half_t h[8]; } out;
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const int ch = c8 + j;
                float val = 0.0f;
                if (ch < C * s * s) {
                    const int c = ch % C, bw = (ch / C) % s, bh = ch / (C * s);
                    const int h = u * s + bh - ph, w = v * s + bw - pw;
                    if (h >= 0 && h < H && w >= 0 && w < W)
                        val = ld(x, (((i64)b * C + c) * H + h) * W + w);
                }
                out.h[j] = f2h(val);
            }
            y[((i64)pix * cp + c8) / 8] = out.q;
        }
    }
}

KERNEL(space_to_depth_f32_f16, space_to_depth<float>(a))
KERNEL(space_to_depth_f16_f16, space_to_depth<half_t>(a))

KERNEL(fused_f32, fused<float, float>(a))
KERNEL(fused_f16, fused<half_t, half_t>(a))
KERNEL(fused_f16_f32, fused<half_t, float>(a))  // an FP32 output written by its producer
KERNEL(fused_f32_f16, fused<float, half_t>(a))  // an FP16 output of an FP32 segment

KERNEL(copy_f32_f32, copy_strided<float, float>(a))
KERNEL(copy_f16_f16, copy_strided<half_t, half_t>(a))
KERNEL(copy_f32_f16, copy_strided<float, half_t>(a))
KERNEL(copy_f16_f32, copy_strided<half_t, float>(a))
KERNEL(copy_f32_i8, copy_strided<float, i8_t>(a))
KERNEL(copy_f16_i8, copy_strided<half_t, i8_t>(a))
KERNEL(copy_i8_f32, copy_strided<i8_t, float>(a))
KERNEL(copy_i8_f16, copy_strided<i8_t, half_t>(a))
KERNEL(copy_i8_i8, copy_strided<i8_t, i8_t>(a))
