// The tiled SIMT implicit-GEMM convolution (conv_tiled.cuh) storing a kernel == stride
// ConvTranspose's GEMM upsampled (d2s.cuh): conv_tiled_d2s_f32, conv_tiled_d2s_f16.
#define D2S 1
#include "conv_tiled.cuh"
