// Recurrent layers (ONNX RNN, GRU, LSTM): the time loop of one (batch entry, direction).
//
// As TensorRT / cuDNN split it: the input projection X W^T of every time step is one batched
// GEMM before this kernel (bmm in gemm.cu); what is left is inherently sequential -- step t
// needs h(t-1) -- so ONE launch runs the whole sequence, looping over time inside the kernel:
// one thread block per (batch entry, direction), the hidden state in shared memory, each thread
// owning hidden units j = tid, tid + blockDim, ... and computing their gates' R.h dot products
// and nonlinearities, then __syncthreads() before the next step reads h. The recognisers this is
// for (CRNN: hidden 24..256, batch 1) fit one block easily; correctness first, so no split of a
// step over several blocks (that needs a grid-wide barrier per step) and no tensor cores.
// Accumulation is FP32 whatever T is; T (FP32 or FP16) is the storage of the projection, R, the
// states and the outputs.
#include "common.cuh"

// p = {P (T): the projection, [D][T*B rows][G*H] (rows at t * i[6] + b * i[7]),
//      Rt (T): R transposed per direction, [D][H (k)][G*H], so that at one k the threads of a
//              warp read consecutive gate columns (coalesced) instead of rows H apart,
//      bias f32: [D][2 * G*H] (Wb then Rb, as ONNX's B),
//      h0 (T) | 0, c0 (T) | 0 (LSTM), Y (T) | 0, Y_h (T) | 0, Y_c (T) | 0}
// i = {steps, batch, H, G (1 RNN, 3 GRU, 4 LSTM), linear_before_reset, reverse,
//      p_t, p_b (projection row strides), y_t, y_d, y_b (Y strides),
//      s_d, s_b (strides of h0 / c0 / Y_h / Y_c)}
// Gate order as ONNX: LSTM i, o, f, c; GRU z, r, h. Activations are the defaults (sigmoid,
// tanh, tanh); the lowering refuses others.
// Shared memory: 3 * H floats: h double-buffered (one barrier a step: step t reads one half and
// writes the other) and one H-vector owned per unit (LSTM: the cell state c; GRU with
// linear_before_reset = 0: r * h, which every unit's candidate dot product reads).
template <typename T>
__device__ void rnn(const KArgs& a) {
    extern __shared__ float sm[];
    const int steps = a.i[0], B = a.i[1], H = a.i[2], G = a.i[3], lbr = a.i[4];
    const int b = blockIdx.x, d = blockIdx.y;
    const bool back = a.i[5] || d == 1;  // reverse, or the second half of bidirectional
    const int GH = G * H;
    const T* P = (const T*)a.p[0] + (i64)d * steps * B * GH;
    const T* R = (const T*)a.p[1] + (i64)d * H * GH;
    const float* wb = (const float*)a.p[2] + (i64)d * 2 * GH;
    const float* rb = wb + GH;
    const T* h0 = (const T*)a.p[3];
    const T* c0 = (const T*)a.p[4];
    T* Y = (T*)a.p[5];
    T* Yh = (T*)a.p[6];
    T* Yc = (T*)a.p[7];
    float* hbuf = sm;         // [2][H]
    float* aux = sm + 2 * H;  // [H]
    const i64 s0 = (i64)d * a.i[11] + (i64)b * a.i[12];
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        hbuf[j] = h0 ? ld(h0, s0 + j) : 0.0f;
        aux[j] = (G == 4 && c0) ? ld(c0, s0 + j) : 0.0f;
    }
    __syncthreads();
    int cur = 0;
    for (int s = 0; s < steps; ++s) {
        const int t = back ? steps - 1 - s : s;
        const T* x = P + ((i64)t * a.i[6] + (i64)b * a.i[7]) * GH;
        const float* h = hbuf + cur * H;
        float* hn = hbuf + (cur ^ 1) * H;
        if (G == 3 && !lbr) {
            // the candidate's dot product (r * h) . R_h needs every unit's reset gate first
            for (int j = threadIdx.x; j < H; j += blockDim.x) {
                float acc = ld(x, H + j) + wb[H + j] + rb[H + j];
                for (int k = 0; k < H; ++k) acc += h[k] * ld(R, (i64)k * GH + H + j);
                aux[j] = sigmoidf_(acc) * h[j];
            }
            __syncthreads();
        }
        for (int j = threadIdx.x; j < H; j += blockDim.x) {
            float out;
            if (G == 1) {
                float acc = ld(x, j) + wb[j] + rb[j];
                for (int k = 0; k < H; ++k) acc += h[k] * ld(R, (i64)k * GH + j);
                out = tanhf(acc);
            } else if (G == 4) {
                float gi = ld(x, j) + wb[j] + rb[j];
                float go = ld(x, H + j) + wb[H + j] + rb[H + j];
                float gf = ld(x, 2 * H + j) + wb[2 * H + j] + rb[2 * H + j];
                float gc = ld(x, 3 * H + j) + wb[3 * H + j] + rb[3 * H + j];
                for (int k = 0; k < H; ++k) {
                    const float hk = h[k];
                    const T* row = R + (i64)k * GH;
                    gi += hk * ld(row, j);
                    go += hk * ld(row, H + j);
                    gf += hk * ld(row, 2 * H + j);
                    gc += hk * ld(row, 3 * H + j);
                }
                const float c = sigmoidf_(gf) * aux[j] + sigmoidf_(gi) * tanhf(gc);
                aux[j] = c;
                out = sigmoidf_(go) * tanhf(c);
            } else {  // GRU
                float gz = ld(x, j) + wb[j] + rb[j];
                float gr = ld(x, H + j) + wb[H + j] + rb[H + j];
                float gh = 0.0f;  // R_h . h (linear_before_reset) or R_h . (r * h)
                for (int k = 0; k < H; ++k) {
                    const T* row = R + (i64)k * GH;
                    gz += h[k] * ld(row, j);
                    if (lbr) {
                        gr += h[k] * ld(row, H + j);
                        gh += h[k] * ld(row, 2 * H + j);
                    } else {
                        gh += aux[k] * ld(row, 2 * H + j);
                    }
                }
                const float xh = ld(x, 2 * H + j) + wb[2 * H + j];
                const float cand = lbr ? tanhf(xh + sigmoidf_(gr) * (gh + rb[2 * H + j]))
                                       : tanhf(xh + gh + rb[2 * H + j]);
                const float z = sigmoidf_(gz);
                out = (1.0f - z) * cand + z * h[j];
            }
            hn[j] = out;
            if (Y) st(Y, (i64)t * a.i[8] + (i64)d * a.i[9] + (i64)b * a.i[10] + j, out);
        }
        __syncthreads();
        cur ^= 1;
    }
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        if (Yh) st(Yh, s0 + j, hbuf[cur * H + j]);
        if (Yc) st(Yc, s0 + j, aux[j]);
    }
}

KERNEL(rnn_f32, rnn<float>(a))
KERNEL(rnn_f16, rnn<half_t>(a))
