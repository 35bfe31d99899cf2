// The tiled SIMT implicit-GEMM convolution (conv_tiled.cuh): conv_tiled_f32, conv_tiled_f16.
#include "conv_tiled.cuh"
