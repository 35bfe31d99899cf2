// Micro-benchmarks: the mma.sync rates with operands in registers (no memory traffic), the
// ceilings the convolution tactics are measured against. sm_80+ (no-ops below, so the module
// still cross-compiles for sm_72):
//   mma_peak       m16n8k16 FP16 x FP16 -> FP32
//   mma_peak_int8  m16n8k32 S8 x S8 -> S32
#include "common.cuh"

// p = {sink f32}; i = {iterations}
extern "C" __global__ void mma_peak(const KArgs a) {
#if __CUDA_ARCH__ >= 800
    unsigned af[4], bf[2];
    for (int i = 0; i < 4; ++i) af[i] = 0x3c003c00u + threadIdx.x + i;  // ~1.0 in fp16
    for (int i = 0; i < 2; ++i) bf[i] = 0x38003800u + threadIdx.x + i;  // ~0.5
    float acc[8][4];
#pragma unroll
    for (int c = 0; c < 8; ++c)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[c][e] = 0.0f;
    const int iters = a.i[0];
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int c = 0; c < 8; ++c)  // 8 independent chains hide the MMA latency
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(acc[c][0]), "+f"(acc[c][1]), "+f"(acc[c][2]), "+f"(acc[c][3])
                : "r"(af[0]), "r"(af[1]), "r"(af[2]), "r"(af[3]), "r"(bf[0]), "r"(bf[1]));
    }
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < 8; ++c) s += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
    if (s == 1234.5f) ((float*)a.p[0])[threadIdx.x] = s;  // keep the work alive
#endif
}

// The INT8 ceiling: 16*8*32 multiply-adds per instruction, twice FP16's per-instruction work.
// p = {sink s32}; i = {iterations}
extern "C" __global__ void mma_peak_int8(const KArgs a) {
#if __CUDA_ARCH__ >= 800
    unsigned af[4], bf[2];
    // Small bytes (1..4, 1..2): each instruction adds at most 256 per accumulator, so thousands of
    // iterations stay far from S32 overflow.
    for (int i = 0; i < 4; ++i) af[i] = 0x01010101u * (1u + ((threadIdx.x + i) & 3u));
    for (int i = 0; i < 2; ++i) bf[i] = 0x01010101u * (1u + ((threadIdx.x + i) & 1u));
    int acc[8][4];
#pragma unroll
    for (int c = 0; c < 8; ++c)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[c][e] = 0;
    const int iters = a.i[0];
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int c = 0; c < 8; ++c)  // 8 independent chains hide the MMA latency
            asm volatile(
                "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+r"(acc[c][0]), "+r"(acc[c][1]), "+r"(acc[c][2]), "+r"(acc[c][3])
                : "r"(af[0]), "r"(af[1]), "r"(af[2]), "r"(af[3]), "r"(bf[0]), "r"(bf[1]));
    }
    int s = 0;
#pragma unroll
    for (int c = 0; c < 8; ++c) s += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
    if (s == 1234567) ((int*)a.p[0])[threadIdx.x] = s;  // keep the work alive
#endif
}
