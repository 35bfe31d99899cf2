// Squeeze-and-excitation in two kernels (partitioner/passes/fusion.py decides where):
//   se_dw_pool: where a depthwise convolution writes the block's input, that convolution,
//             summing its output per channel as it writes it (else se_pool);
//   se_pool:  sums over H, W (in a few pixel ranges) of each (n, c) of an NHWC tensor, in FP32;
//   se_scale: per CTA, both small FCs and the gate from those means (a few thousand MACs,
//             recomputed by every CTA of an image instead of a kernel launch of their own),
//             then y = x * gate[n, c] over the CTA's slice of pixels.
// Plain SIMT loads and FMAs only: the same code on sm_72, sm_87 and sm_90.
#include "depthwise.cuh"

#define SE_THREADS 256
#define SE_POOL_CHANNELS 32  // channels a pool CTA reduces: one warp-wide row of them
#define SE_POOL_ROWS (SE_THREADS / SE_POOL_CHANNELS)

// p = {x, sums (FP32, N x splits x C)}; i = {N, HW, C, xcs, splits};
// grid (ceil(C / 32), N, splits): CTA z sums pixels [z * per, (z + 1) * per) of its 32
// channels, per = ceil(HW / splits), so a large image with few channels (EfficientNet's first
// block: 112 x 112 x 32) still spreads over many SMs; se_scale adds the splits' sums.
// Each warp reads 32 neighbouring channels of one pixel (coalesced); the 8 warps take every
// 8th pixel and a shared-memory sum joins them.
template <typename T>
__device__ void se_pool(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    float* sums = (float*)a.p[1];
    const int HW = a.i[1], C = a.i[2], xcs = a.i[3], splits = a.i[4];
    const int n = blockIdx.y, z = blockIdx.z;
    const int per = (HW + splits - 1) / splits;
    const int begin = z * per, end = min(HW, begin + per);
    const int lane = threadIdx.x % SE_POOL_CHANNELS, row = threadIdx.x / SE_POOL_CHANNELS;
    const int c = blockIdx.x * SE_POOL_CHANNELS + lane;
    __shared__ float part[SE_POOL_ROWS][SE_POOL_CHANNELS + 1];
    float acc = 0.0f;
    if (c < C) {
        const T* xp = x + (i64)n * HW * xcs + c;
        for (int i = begin + row; i < end; i += SE_POOL_ROWS) acc += ld(xp, (i64)i * xcs);
    }
    part[row][lane] = acc;
    __syncthreads();
    if (row == 0 && c < C) {
        float sum = 0.0f;
#pragma unroll
        for (int r = 0; r < SE_POOL_ROWS; ++r) sum += part[r][lane];
        sums[((i64)n * splits + z) * C + c] = sum;
    }
}

// p = {x, sums (FP32, se_pool's), w1 (S x C), b1 (FP32 S, or 0), w2t (S x C: fc2's weight
// transposed, so that threads of neighbouring channels read neighbouring weights), b2 (FP32 C,
// or 0), y}; i = {N, HW, C, S, xcs, ycs, act, gate, pixels a CTA, splits};
// f = {act a, act b, gate a, gate b, 1 / y's INT8 scale (1 for a float y)};
// grid (ceil(HW / pixels), N); dynamic shared memory (2 C + S) floats.
// V channels a thread in the scale: 1 (any type) or 8 (FP16: 16-byte loads and stores; the host
// checks C, xcs, ycs and the x / y element offsets are multiples of 8). O: y's type (INT8 when
// the next convolution reads INT8: quantised here instead of by a copy kernel).
template <int V, typename T, typename O>
__device__ void se_scale(const KArgs& a) {
    const T* x = (const T*)a.p[0];
    const float* sums = (const float*)a.p[1];
    const T* w1 = (const T*)a.p[2];
    const float* b1 = (const float*)a.p[3];
    const T* w2t = (const T*)a.p[4];
    const float* b2 = (const float*)a.p[5];
    O* y = (O*)a.p[6];
    const int HW = a.i[1], C = a.i[2], S = a.i[3], xcs = a.i[4], ycs = a.i[5];
    const int act = a.i[6], gate_act = a.i[7], chunk = a.i[8], splits = a.i[9];
    const float out_scale = a.f[4];
    const int n = blockIdx.y;
    extern __shared__ float smem[];
    float* s_mean = smem;        // C
    float* s_gate = smem + C;    // C
    float* s_hid = smem + 2 * C; // S
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float sum = 0.0f;
        for (int z = 0; z < splits; ++z) sum += sums[((i64)n * splits + z) * C + c];
        s_mean[c] = sum / (float)HW;
    }
    __syncthreads();
    // fc1: a warp per hidden unit, its lanes over the input channels, then a shuffle sum
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (int s = warp; s < S; s += warps) {
        float acc = 0.0f;
#pragma unroll 4
        for (int c = lane; c < C; c += 32) acc += ld(w1, (i64)s * C + c) * s_mean[c];
#pragma unroll
        for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (lane == 0) s_hid[s] = activate(acc + (b1 ? b1[s] : 0.0f), act, a.f[0], a.f[1]);
    }
    __syncthreads();
    // fc2 and the gate: a thread per output channel
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = b2 ? b2[c] : 0.0f;
#pragma unroll 4
        for (int s = 0; s < S; ++s) acc += ld(w2t, (i64)s * C + c) * s_hid[s];
        s_gate[c] = activate(acc, gate_act, a.f[2], a.f[3]);
    }
    __syncthreads();
    // the scale over this CTA's pixels, channel fastest (coalesced)
    const int p0 = blockIdx.x * chunk;
    const int pixels = min(chunk, HW - p0);
    const int CV = C / V;
    const int total = pixels * CV;
    const i64 base = (i64)n * HW + p0;
    for (int e = threadIdx.x; e < total; e += blockDim.x) {
        const int pix = e / CV, c = (e - pix * CV) * V;
        float v[V];
        ld_vec<V>(x + (base + pix) * xcs + c, v);
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] *= s_gate[c + j] * out_scale;
        st_vec<V>(y + (base + pix) * ycs + c, v);
    }
}

// Depthwise convolution that also sums its output over H, W per channel: the squeeze of the
// squeeze-and-excitation block it feeds (partitioner/passes/fusion.py: se_pooled_by), so that
// no kernel reads the output again for the pool. p[5] = partial sums (FP32, N x B x C); i[21] =
// elements (of V channels) a CTA; grid (B, N); dynamic shared memory C + blockDim.x x V floats.
// CTA (b, n) covers elements [b * chunk, (b + 1) * chunk) of image n and writes its C sums
// (se_scale adds the B partials: no atomics in global memory, no zeroing). The sums are made in
// a fixed order, so a replay gives the same bits: each round of blockDim.x elements is staged in
// shared memory, then the one thread that owns a channel vector adds that round's elements of
// it in element order (shared-memory float atomics would add them in arrival order).
template <int V, typename T>
__device__ void se_dw_pool(const KArgs& a) {
    T* y = (T*)a.p[4];
    float* partial = (float*)a.p[5];
    const ConvArgs cv = conv_args(a);
    const int chunk = a.i[21];
    const int CV = cv.C / V;
    const int per_image = cv.P * cv.Q * CV;
    const int n = blockIdx.y;
    extern __shared__ float s_sum[];
    float* s_round = s_sum + cv.C;  // blockDim.x x V outputs of the current round
    for (int c = threadIdx.x; c < cv.C; c += blockDim.x) s_sum[c] = 0.0f;
    __syncthreads();
    const int begin = blockIdx.x * chunk, end = min(per_image, begin + chunk);
    for (int e0 = begin; e0 < end; e0 += blockDim.x) {
        const int e = e0 + threadIdx.x;
        if (e < end) {
            const NhwcPos o = nhwc_pos(n * per_image + e, CV, cv.P, cv.Q);
            float out[V];
            dw_point<V, T>(a, cv, o, out);
            st_vec<V>(y + (i64)o.m * cv.ycs + o.c * V, out);
#pragma unroll
            for (int j = 0; j < V; ++j) s_round[threadIdx.x * V + j] = out[j];
        }
        __syncthreads();
        // element e0 + t holds channel vector (e0 + t) % CV (elements are pixel-major)
        const int count = min((int)blockDim.x, end - e0), first = e0 % CV;
        for (int cvec = threadIdx.x; cvec < CV; cvec += blockDim.x) {
            for (int t = cvec >= first ? cvec - first : cvec - first + CV; t < count; t += CV) {
#pragma unroll
                for (int j = 0; j < V; ++j) s_sum[cvec * V + j] += s_round[t * V + j];
            }
        }
        __syncthreads();
    }
    float* dst = partial + ((i64)n * gridDim.x + blockIdx.x) * cv.C;
    for (int c = threadIdx.x; c < cv.C; c += blockDim.x) dst[c] = s_sum[c];
}

#define INSTANTIATE(fn)                                                                 \
    KERNEL(fn##_f32, fn<float>(a))                                                     \
    KERNEL(fn##_f16, fn<half_t>(a))

INSTANTIATE(se_pool)
KERNEL(se_scale_f32, se_scale<1, float, float>(a))
KERNEL(se_scale_f16, se_scale<1, half_t, half_t>(a))
KERNEL(se_scale_x8_f16, se_scale<8, half_t, half_t>(a))
KERNEL(se_scale_f16_i8, se_scale<1, half_t, i8_t>(a))
KERNEL(se_scale_x8_f16_i8, se_scale<8, half_t, i8_t>(a))
KERNEL(se_dw_pool_f32, se_dw_pool<1, float>(a))
KERNEL(se_dw_pool_f16, se_dw_pool<1, half_t>(a))
KERNEL(se_dw_pool_x8_f16, se_dw_pool<8, half_t>(a))
