"""The numpy CPU backend against ONNX Runtime, one tiny single-op model per table row.

Each row builds a one-node ONNX model with ``onnx.helper`` (runtime inputs become graph inputs,
constant inputs become initializers), imports it with Tandem's importer, runs it on
``CpuRunner`` and on ONNX Runtime, and compares: same dtype, same shape, and for floats
``max|a-b| / max|b|`` within the row's tolerance (1e-5 for FP32, 1e-3 for FP16); integers and
booleans must match exactly.
"""

# ruff: noqa: E501  (the case table keeps one row per case; wrapping rows hurts reading it)
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

ort = pytest.importorskip("onnxruntime")

from devices.cpu import CpuRunner, supported_ops  # noqa: E402
from partitioner.onnx_import import SUPPORTED_OPS, import_onnx  # noqa: E402

RNG = np.random.default_rng(1234)


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def f16(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float16)


def pos(*shape: int) -> np.ndarray:
    return (RNG.random(shape) + 0.5).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


@dataclass
class C:
    """A constant input: stored as an initializer in the model."""

    value: np.ndarray


@dataclass
class Case:
    id: str
    op: str
    inputs: list[Any]  # np.ndarray (graph input), C (initializer) or None (omitted)
    attrs: dict[str, Any] = field(default_factory=dict)
    outputs: int = 1
    tol: float = 1e-5
    opset: int = 18


W3 = f32(8, 4, 3, 3)
CASES = [
    # ----- convolution ---------------------------------------------------------------------
    Case("conv_basic", "Conv", [f32(1, 4, 9, 9), C(W3)]),
    Case("conv_pad_bias", "Conv", [f32(2, 4, 9, 9), C(W3), C(f32(8))], {"pads": [1, 1, 1, 1]}),
    Case("conv_stride2_asym_pad", "Conv", [f32(1, 4, 10, 11), C(W3)],
         {"strides": [2, 2], "pads": [0, 1, 2, 1]}),
    Case("conv_dilation", "Conv", [f32(1, 4, 12, 12), C(W3)], {"dilations": [2, 3], "pads": [2, 2, 2, 2]}),
    Case("conv_groups", "Conv", [f32(1, 4, 8, 8), C(f32(6, 2, 3, 3))], {"group": 2}),
    Case("conv_depthwise", "Conv", [f32(2, 6, 9, 9), C(f32(6, 1, 3, 3)), C(f32(6))],
         {"group": 6, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    Case("conv_depthwise_mult2", "Conv", [f32(1, 3, 7, 7), C(f32(6, 1, 5, 5))],
         {"group": 3, "pads": [2, 2, 2, 2]}),
    Case("conv_1x1", "Conv", [f32(1, 16, 7, 7), C(f32(8, 16, 1, 1))]),
    Case("conv_1x1_stride2", "Conv", [f32(1, 16, 8, 8), C(f32(8, 16, 1, 1))], {"strides": [2, 2]}),
    Case("conv_same_upper", "Conv", [f32(1, 4, 7, 8), C(W3)], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    Case("conv_same_lower", "Conv", [f32(1, 4, 7, 8), C(f32(2, 4, 4, 4))], {"auto_pad": "SAME_LOWER"}),
    Case("conv_valid", "Conv", [f32(1, 4, 7, 8), C(W3)], {"auto_pad": "VALID"}),
    Case("conv_1d", "Conv", [f32(2, 3, 20), C(f32(5, 3, 4)), C(f32(5))], {"strides": [2], "pads": [1, 2]}),
    Case("conv_3d", "Conv", [f32(1, 2, 5, 6, 7), C(f32(3, 2, 3, 3, 3))], {"pads": [1, 0, 1, 1, 0, 1]}),
    Case("conv_fp16", "Conv", [f16(1, 4, 9, 9), C(W3.astype(np.float16)), C(f16(8))],
         {"pads": [1, 1, 1, 1]}, tol=2e-3),
    Case("convtranspose_s2", "ConvTranspose", [f32(1, 4, 5, 5), C(f32(4, 3, 3, 3)), C(f32(3))],
         {"strides": [2, 2]}),
    Case("convtranspose_pads_outpad", "ConvTranspose", [f32(1, 4, 5, 6), C(f32(4, 3, 3, 3))],
         {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    Case("convtranspose_groups_dil", "ConvTranspose", [f32(2, 4, 4, 4), C(f32(4, 2, 3, 2))],
         {"group": 2, "dilations": [2, 1]}),
    Case("convtranspose_k4s2p1", "ConvTranspose", [f32(1, 8, 6, 6), C(f32(8, 4, 4, 4))],
         {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("convtranspose_output_shape", "ConvTranspose", [f32(1, 2, 3, 3), C(f32(2, 2, 3, 3))],
         {"strides": [3, 2], "output_shape": [10, 8]}),
    Case("convtranspose_1d", "ConvTranspose", [f32(1, 3, 7), C(f32(3, 2, 3))], {"strides": [3]}),
    Case("convtranspose_same_upper", "ConvTranspose", [f32(1, 2, 5, 5), C(f32(2, 3, 3, 3))],
         {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    Case("convtranspose_same_lower", "ConvTranspose", [f32(1, 2, 5, 5), C(f32(2, 3, 2, 2))],
         {"auto_pad": "SAME_LOWER", "strides": [3, 3]}),
    # ----- pooling -------------------------------------------------------------------------
    Case("maxpool_3x3s2p1", "MaxPool", [f32(1, 3, 9, 9)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("maxpool_ceil", "MaxPool", [f32(1, 2, 8, 8)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    Case("maxpool_dilated", "MaxPool", [f32(1, 2, 9, 9)],
         {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    Case("maxpool_same_upper", "MaxPool", [f32(1, 2, 7, 7)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    Case("maxpool_1d", "MaxPool", [f32(2, 3, 11)], {"kernel_shape": [3], "strides": [2]}),
    Case("maxpool_int8", "MaxPool", [RNG.integers(-128, 127, (1, 2, 6, 6)).astype(np.int8)],
         {"kernel_shape": [2, 2], "strides": [2, 2]}),
    Case("avgpool_exclude_pad", "AveragePool", [f32(1, 3, 7, 7)],
         {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    Case("avgpool_include_pad", "AveragePool", [f32(1, 3, 7, 7)],
         {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    Case("avgpool_ceil", "AveragePool", [f32(1, 3, 8, 8)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    Case("avgpool_3d", "AveragePool", [f32(1, 2, 4, 5, 6)], {"kernel_shape": [2, 2, 2]}),
    Case("global_avgpool", "GlobalAveragePool", [f32(2, 5, 6, 7)]),
    Case("global_maxpool", "GlobalMaxPool", [f32(2, 5, 6, 7)]),
    # ----- dense, normalisation ------------------------------------------------------------
    Case("gemm_transb_bias", "Gemm", [f32(3, 5), C(f32(4, 5)), C(f32(4))], {"transB": 1}),
    Case("gemm_alpha_beta_transa", "Gemm", [f32(5, 3), f32(5, 4), C(f32(3, 4))],
         {"transA": 1, "alpha": 0.5, "beta": 2.0}),
    Case("matmul_batched", "MatMul", [f32(2, 3, 4, 5), f32(2, 3, 5, 6)]),
    Case("matmul_broadcast", "MatMul", [f32(2, 1, 4, 5), C(f32(5, 3))]),
    Case("matmul_fp16", "MatMul", [f16(4, 64), f16(64, 8)], tol=2e-3),
    Case("batchnorm", "BatchNormalization", [f32(2, 3, 4, 5), C(f32(3)), C(f32(3)), C(f32(3)), C(pos(3))],
         {"epsilon": 1e-3}),
    Case("instancenorm", "InstanceNormalization", [f32(2, 3, 4, 5), C(f32(3)), C(f32(3))]),
    Case("layernorm_last", "LayerNormalization", [f32(2, 3, 8), C(f32(8)), C(f32(8))]),
    Case("layernorm_axis1", "LayerNormalization", [f32(2, 3, 4), C(f32(3, 4))], {"axis": 1}),
    Case("lrn_5", "LRN", [f32(1, 7, 4, 4)], {"size": 5, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}),
    Case("lrn_3", "LRN", [f32(1, 6, 3, 3)], {"size": 3}),
    # ----- activations ---------------------------------------------------------------------
    *[Case(f"act_{op.lower()}", op, [f32(2, 3, 4, 5)]) for op in (
        "Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Floor", "Ceil", "Erf", "Softplus",
        "Mish", "HardSwish", "Elu", "Selu")],
    Case("act_gelu", "Gelu", [f32(2, 3, 4, 5)], opset=20),
    Case("act_sqrt_log_recip", "Sqrt", [pos(3, 4)]),
    Case("act_log", "Log", [pos(3, 4)]),
    Case("act_reciprocal", "Reciprocal", [pos(3, 4)]),
    Case("leakyrelu", "LeakyRelu", [f32(3, 4)], {"alpha": 0.2}),
    Case("hardsigmoid", "HardSigmoid", [f32(3, 4) * 4], {"alpha": 0.3, "beta": 0.4}),
    Case("gelu_tanh", "Gelu", [f32(3, 4)], {"approximate": "tanh"}, opset=20),
    Case("prelu_channel", "PRelu", [f32(1, 3, 4, 4), C(f32(3, 1, 1))]),
    Case("clip_both", "Clip", [f32(3, 4), C(np.array(-0.5, np.float32)), C(np.array(0.7, np.float32))]),
    Case("clip_max_only", "Clip", [f32(3, 4), None, C(np.array(0.1, np.float32))]),
    Case("relu_fp16", "Relu", [f16(3, 4)], tol=1e-3),
    # ----- element-wise --------------------------------------------------------------------
    Case("add_broadcast", "Add", [f32(2, 3, 4), f32(3, 1)]),
    Case("sub", "Sub", [f32(2, 3), f32(2, 3)]),
    Case("mul_const", "Mul", [f32(2, 3), C(f32(3))]),
    Case("div", "Div", [f32(2, 3), pos(2, 3)]),
    Case("div_int_trunc", "Div", [i64(7, -7, 7, -7, 0), i64(2, 2, -2, -2, 3)]),
    Case("pow", "Pow", [pos(2, 3), f32(2, 3)]),
    Case("pow_int_exponent", "Pow", [f32(2, 3), C(np.array(2, np.int64))]),
    Case("max3", "Max", [f32(2, 3), f32(3), f32(2, 1)]),
    Case("min2", "Min", [f32(2, 3), f32(2, 3)]),
    Case("sum3", "Sum", [f32(2, 3), f32(2, 3), f32(3)]),
    Case("add_fp16", "Add", [f16(4, 5), f16(5)], tol=1e-3),
    Case("equal_int", "Equal", [i64(1, 2, 3), i64(1, 0, 3)]),
    Case("greater", "Greater", [f32(3, 4), f32(4)]),
    Case("less", "Less", [f32(3, 4), f32(3, 4)]),
    Case("not", "Not", [RNG.random((3, 4)) > 0.5]),
    Case("where", "Where", [RNG.random((3, 4)) > 0.5, f32(3, 4), f32(4)]),
    # ----- shape and data movement ---------------------------------------------------------
    Case("concat", "Concat", [f32(2, 3), f32(2, 5)], {"axis": -1}),
    Case("split_sizes", "Split", [f32(6, 4), C(i64(1, 2, 3))], {"axis": 0}, outputs=3),
    Case("split_equal", "Split", [f32(2, 9)], {"axis": 1, "num_outputs": 3}, outputs=3),
    Case("slice_basic", "Slice", [f32(5, 6), C(i64(1, 0)), C(i64(4, 6)), C(i64(0, 1)), C(i64(1, 2))]),
    Case("slice_negative_step", "Slice", [f32(5, 6), C(i64(-1)), C(i64(-100)), C(i64(1)), C(i64(-2))]),
    Case("slice_negative_step_start_below", "Slice", [f32(3, 3), C(i64(-8)), C(i64(-2**31)), C(i64(0)), C(i64(-2))]),
    Case("slice_clamped", "Slice", [f32(5, 6), C(i64(-10, 2)), C(i64(100, -1))]),
    Case("reshape_zero_minus1", "Reshape", [f32(2, 3, 4), C(i64(0, -1))]),
    Case("flatten", "Flatten", [f32(2, 3, 4, 5)], {"axis": 2}),
    Case("transpose", "Transpose", [f32(2, 3, 4)], {"perm": [2, 0, 1]}),
    Case("squeeze", "Squeeze", [f32(2, 1, 3, 1), C(i64(1, -1))]),
    Case("unsqueeze", "Unsqueeze", [f32(2, 3), C(i64(0, 3))]),
    Case("pad_constant", "Pad", [f32(2, 3), C(i64(1, 0, 2, 1)), C(np.array(1.5, np.float32))]),
    Case("pad_reflect", "Pad", [f32(1, 2, 4, 4), C(i64(0, 0, 1, 2, 0, 0, 2, 1))], {"mode": "reflect"}),
    Case("pad_edge", "Pad", [f32(1, 2, 4, 4), C(i64(0, 0, 1, 2, 0, 0, 2, 1))], {"mode": "edge"}),
    Case("pad_axes", "Pad", [f32(2, 3, 4), C(i64(1, 2, 3, 0)), None, C(i64(0, 2))]),
    Case("gather_axis1_neg", "Gather", [f32(3, 5), C(i64(0, -1, 2))], {"axis": 1}),
    Case("gather_2d_indices", "Gather", [f32(4, 3), C(np.array([[0, 1], [3, 2]], np.int64))]),
    Case("shape", "Shape", [f32(2, 3, 4)]),
    Case("shape_slice", "Shape", [f32(2, 3, 4, 5)], {"start": 1, "end": -1}),
    Case("constant_of_shape", "ConstantOfShape", [C(i64(2, 3))],
         {"value": onnx.numpy_helper.from_array(np.array([7], np.int32))}),
    Case("cast_f32_f16", "Cast", [f32(3, 4)], {"to": onnx.TensorProto.FLOAT16}, tol=1e-3),
    Case("cast_f32_i32", "Cast", [f32(3, 4) * 10], {"to": onnx.TensorProto.INT32}),
    Case("cast_i64_f32", "Cast", [i64(1, -2, 3)], {"to": onnx.TensorProto.FLOAT}),
    Case("identity", "Identity", [f32(3)]),
    Case("dropout_inference", "Dropout", [f32(3, 4)]),
    Case("expand", "Expand", [f32(3, 1), C(i64(2, 1, 4))]),
    Case("tile", "Tile", [f32(2, 3), C(i64(2, 2))]),
    Case("range", "Range", [C(np.array(1.0, np.float32)), C(np.array(5.0, np.float32)),
                            C(np.array(0.7, np.float32))]),
    # ----- resize --------------------------------------------------------------------------
    *[
        Case(f"resize_nearest_{cm}_{nm}", "Resize", [f32(1, 2, 4, 5), None, C(np.array([1, 1, 1.7, 2.3], np.float32))],
             {"mode": "nearest", "coordinate_transformation_mode": cm, "nearest_mode": nm})
        for cm in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel")
        for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
    ],
    *[
        Case(f"resize_linear_{cm}", "Resize", [f32(1, 2, 4, 5), None, C(np.array([1, 1, 1.5, 0.6], np.float32))],
             {"mode": "linear", "coordinate_transformation_mode": cm})
        for cm in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                   "half_pixel_symmetric")
    ],
    Case("resize_nearest_sizes_2x", "Resize", [f32(1, 3, 5, 5), None, None, C(i64(1, 3, 10, 10))],
         {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}),
    # ties a float64 computation would break differently than ORT's float32 (8.5 / 1.7 = 4.5)
    Case("resize_nearest_float32_tie", "Resize", [f32(1, 1, 7, 7), None, C(np.array([1, 1, 1.49, 1.7], np.float32))],
         {"mode": "nearest", "nearest_mode": "round_prefer_ceil"}),
    Case("resize_pytorch_half_pixel_to_1", "Resize", [f32(1, 2, 5, 3), None, None, C(i64(1, 2, 9, 1))],
         {"mode": "cubic", "coordinate_transformation_mode": "pytorch_half_pixel", "exclude_outside": 1}),
    Case("resize_cubic", "Resize", [f32(1, 1, 6, 6), None, C(np.array([1, 1, 1.6, 0.75], np.float32))],
         {"mode": "cubic"}),
    Case("resize_cubic_exclude_outside", "Resize", [f32(1, 1, 6, 6), None, C(np.array([1, 1, 2, 2], np.float32))],
         {"mode": "cubic", "exclude_outside": 1, "cubic_coeff_a": -0.5}),
    Case("resize_linear_antialias", "Resize", [f32(1, 1, 12, 12), None, C(np.array([1, 1, 0.4, 0.5], np.float32))],
         {"mode": "linear", "antialias": 1}),
    Case("resize_tf_crop", "Resize", [f32(1, 1, 6, 6), C(np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 1.3], np.float32)),
                                      None, C(i64(1, 1, 4, 5))],
         {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
          "extrapolation_value": 3.0}),
    # ----- softmax, reductions, selection ---------------------------------------------------
    Case("softmax_last", "Softmax", [f32(2, 3, 7) * 5]),
    Case("softmax_axis1", "Softmax", [f32(2, 3, 7) * 5], {"axis": 1}),
    Case("softmax_fp16", "Softmax", [f16(4, 10)], tol=2e-3),
    Case("logsoftmax", "LogSoftmax", [f32(2, 3, 7) * 5], {"axis": 1}),
    Case("reducemean", "ReduceMean", [f32(2, 3, 4), C(i64(1, -1))]),
    Case("reducesum_nokeep", "ReduceSum", [f32(2, 3, 4), C(i64(0))], {"keepdims": 0}),
    Case("reducemax_all", "ReduceMax", [f32(2, 3, 4)]),
    Case("reducemin", "ReduceMin", [f32(2, 3, 4), C(i64(2))]),
    Case("topk_largest", "TopK", [f32(3, 10), C(i64(4))], {"axis": 1}, outputs=2),
    Case("topk_smallest_ties", "TopK", [np.array([[1, 3, 3, 2, 1, 3]], np.float32), C(i64(3))],
         {"largest": 0}, outputs=2),
    Case("argmax_last_index", "ArgMax", [np.array([[1, 5, 5, 2], [7, 7, 0, 7]], np.float32)],
         {"axis": 1, "select_last_index": 1}),
    Case("argmax_nokeep", "ArgMax", [f32(3, 4, 5)], {"axis": -1, "keepdims": 0}),
    # ----- quantisation --------------------------------------------------------------------
    Case("quantize_uint8", "QuantizeLinear",
         [np.array([0.0, 0.5, 1.5, 2.5, -1.5, 300.0, -300.0], np.float32),
          C(np.array(1.0, np.float32)), C(np.array(10, np.uint8))]),
    Case("quantize_int8_per_axis", "QuantizeLinear",
         [f32(2, 3, 4) * 50, C(np.array([0.5, 1.0, 0.25], np.float32)), C(np.array([0, 3, -2], np.int8))]),
    Case("quantize_default_uint8", "QuantizeLinear", [f32(3, 4) * 40, C(np.array(0.3, np.float32))]),
    Case("dequantize_int8", "DequantizeLinear",
         [RNG.integers(-128, 127, (3, 4)).astype(np.int8), C(np.array(0.1, np.float32)), C(np.array(-3, np.int8))]),
    Case("dequantize_per_axis", "DequantizeLinear",
         [RNG.integers(0, 255, (2, 3, 4)).astype(np.uint8), C(np.array([0.5, 1.0, 0.25], np.float32)),
          C(np.array([128, 0, 7], np.uint8))]),
    # ----- what real exporters add: math and logic -------------------------------------------
    Case("mod_int", "Mod", [i64(7, -7, 7, -7, 5), i64(3, 3, -3, -3, 5)]),
    Case("mod_int_fmod", "Mod", [i64(7, -7, 7, -7), i64(3, 3, -3, -3)], {"fmod": 1}),
    Case("mod_int32_broadcast", "Mod", [np.arange(-6, 6, dtype=np.int32).reshape(3, 4), C(np.array([5], np.int32))]),
    Case("mod_float_fmod", "Mod", [f32(3, 4) * 5, pos(4)], {"fmod": 1}),
    *[Case(f"act_{op.lower()}", op, [f32(2, 3, 4) * 0.9]) for op in (
        "Sin", "Cos", "Tan", "Atan", "Sinh", "Cosh", "Asinh", "Sign", "Softsign")],
    *[Case(f"act_{op.lower()}", op, [RNG.uniform(-0.99, 0.99, (3, 4)).astype(np.float32)]) for op in ("Asin", "Atanh")],
    Case("act_acos", "Acos", [f32(3, 4) * 0.5]),
    Case("act_acosh", "Acosh", [pos(3, 4) + 1]),
    Case("round_half_even", "Round", [np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6], np.float32)]),
    Case("celu", "Celu", [f32(3, 4)], {"alpha": 0.7}),
    Case("thresholded_relu", "ThresholdedRelu", [f32(3, 4)], {"alpha": 0.3}),
    Case("mean3", "Mean", [f32(2, 3), f32(3), f32(2, 1)]),
    Case("isnan", "IsNaN", [np.array([1.0, np.nan, np.inf, -np.inf], np.float32)]),
    Case("isinf", "IsInf", [np.array([1.0, np.nan, np.inf, -np.inf], np.float32)]),
    Case("isinf_positive_only", "IsInf", [np.array([1.0, np.nan, np.inf, -np.inf], np.float32)], {"detect_negative": 0}),
    Case("isinf_negative_only", "IsInf", [np.array([1.0, np.nan, np.inf, -np.inf], np.float32)], {"detect_positive": 0}),
    *[Case(op.lower(), op, [RNG.random((3, 4)) > 0.5, RNG.random((4,)) > 0.5]) for op in ("And", "Or", "Xor")],
    Case("greater_or_equal", "GreaterOrEqual", [i64(1, 2, 3), i64(2)]),
    Case("less_or_equal", "LessOrEqual", [f32(3, 4), f32(4)]),
    Case("castlike", "CastLike", [f32(3, 4) * 10, C(np.array([1], np.int32))]),
    Case("size", "Size", [f32(2, 3, 4)]),
    # ----- ... reductions, selection, running sums ------------------------------------------
    *[Case(f"{op.lower()}_axes", op, [pos(2, 3, 4), C(i64(1, -1))]) for op in (
        "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")],
    Case("reducel2_all_nokeep", "ReduceL2", [f32(2, 3, 4)], {"keepdims": 0}),
    Case("reducelogsumexp_large", "ReduceLogSumExp", [f32(2, 5) * 100, C(i64(0))]),
    Case("reduceprod_empty_axes_noop", "ReduceProd", [f32(2, 3), C(np.array([], np.int64))], {"noop_with_empty_axes": 1}),
    Case("argmin", "ArgMin", [f32(3, 4, 5)], {"axis": 1, "keepdims": 0}),
    Case("hardmax", "Hardmax", [f32(3, 4, 5)], {"axis": -1}),
    Case("cumsum", "CumSum", [f32(3, 4), C(np.array(1, np.int64))]),
    Case("cumsum_exclusive_reverse", "CumSum", [f32(3, 4), C(np.array(-2, np.int32))], {"exclusive": 1, "reverse": 1}),
    Case("cumsum_int_exclusive", "CumSum", [i64(1, 2, 3, 4), C(np.array(0, np.int64))], {"exclusive": 1}),
    Case("einsum_matmul_batched", "Einsum", [f32(2, 3, 4), f32(2, 4, 5)], {"equation": "bij,bjk->bik"}),
    Case("einsum_maxvit_rel", "Einsum", [f32(2, 4, 7, 8), f32(2, 4, 9, 8)], {"equation": "b h i d, b h j d -> b h i j"}),
    Case("einsum_implicit_transpose", "Einsum", [f32(3, 4)], {"equation": "ji"}),
    Case("einsum_trace_diag", "Einsum", [f32(4, 4)], {"equation": "ii->i"}),
    Case("einsum_ellipsis_broadcast", "Einsum", [f32(2, 1, 3, 4), f32(2, 5, 4, 6)], {"equation": "...ij,...jk->...ik"}),
    Case("einsum_three_operands", "Einsum", [f32(3, 4), f32(4, 5), f32(5)], {"equation": "ij,jk,k->i"}),
    # ----- ... indexing ---------------------------------------------------------------------
    Case("gather_elements", "GatherElements", [f32(3, 4), C(np.array([[0, -1, 2, 1]] * 2, np.int64))], {"axis": 0}),
    Case("gather_nd", "GatherND", [f32(3, 4, 5), C(np.array([[0, 1], [2, -1]], np.int64))]),
    Case("gather_nd_full_index", "GatherND", [f32(3, 4), C(np.array([[[0, 1]], [[2, 3]]], np.int64))]),
    Case("gather_nd_batch_dims", "GatherND", [f32(2, 3, 4), C(np.array([[[1], [0]], [[2], [2]]], np.int64))], {"batch_dims": 1}),
    Case("scatter_nd", "ScatterND", [f32(4, 3, 2), C(np.array([[1], [3]], np.int64)), f32(2, 3, 2)]),
    Case("scatter_nd_elements", "ScatterND", [f32(4, 3), C(np.array([[0, 1], [3, -1]], np.int64)), f32(2)]),
    *[Case(f"scatter_nd_{r}", "ScatterND", [f32(4, 3), C(np.array([[1], [3], [1]], np.int64)), f32(3, 3)], {"reduction": r})
      for r in ("add", "mul", "max", "min")],
    Case("scatter_elements", "ScatterElements", [f32(3, 4), C(np.array([[1, 0, 2, -1]], np.int64)), f32(1, 4)], {"axis": 1}),
    *[Case(f"scatter_elements_{r}", "ScatterElements", [f32(3, 4), C(np.array([[1, 1], [0, 0]], np.int64)), f32(2, 2)], {"axis": 1, "reduction": r})
      for r in ("add", "mul", "max", "min")],
    Case("one_hot", "OneHot", [i64(0, 3, -1, 7), C(np.array(5, np.int64)), C(np.array([0.5, 2.0], np.float32))]),
    Case("one_hot_axis0_int_values", "OneHot", [np.array([[1, 2], [0, -2]], np.int64), C(np.array([3], np.int64)), C(np.array([0, 1], np.int64))], {"axis": 0}),
    Case("trilu_upper", "Trilu", [f32(2, 4, 5)]),
    Case("trilu_lower_k", "Trilu", [f32(4, 5), C(np.array(-1, np.int64))], {"upper": 0}),
    Case("trilu_upper_k2", "Trilu", [f32(3, 6), C(np.array(2, np.int64))]),
    Case("depth_to_space_dcr", "DepthToSpace", [f32(1, 8, 2, 3)], {"blocksize": 2}),
    Case("depth_to_space_crd", "DepthToSpace", [f32(1, 8, 2, 3)], {"blocksize": 2, "mode": "CRD"}),
    Case("space_to_depth", "SpaceToDepth", [f32(1, 2, 4, 6)], {"blocksize": 2}),
    Case("nonzero", "NonZero", [np.array([[1, 0, 2], [0, 0, 3]], np.float32)]),
    Case("nonzero_bool", "NonZero", [RNG.random((2, 3, 4)) > 0.6]),
    Case("nonzero_scalar", "NonZero", [np.array(3.0, np.float32)]),
    Case("nonzero_none", "NonZero", [np.zeros((2, 3), np.int32)]),
    # ----- ... sampling and detection -------------------------------------------------------
    *[Case(f"grid_sample_{mode}_{pad}_ac{ac}", "GridSample", [f32(2, 3, 5, 6), f32(2, 4, 7, 2) * 1.4],
           {"mode": mode, "padding_mode": pad, "align_corners": ac}, opset=20)
      for mode in ("linear", "nearest", "cubic") for pad in ("zeros", "border", "reflection") for ac in (0, 1)],
    *[Case(f"grid_sample_3d_{mode}_{pad}", "GridSample", [f32(1, 2, 3, 4, 5), f32(1, 2, 3, 4, 3) * 1.3],
           {"mode": mode, "padding_mode": pad, "align_corners": 0}, opset=20)
      for mode in ("linear", "nearest") for pad in ("zeros", "border", "reflection")],
    Case("grid_sample_opset16_bilinear", "GridSample", [f32(1, 2, 4, 4), f32(1, 3, 3, 2)], {"mode": "bilinear"}, opset=16),
    Case("grid_sample_opset16_bicubic_reflection", "GridSample", [f32(1, 2, 4, 4), f32(1, 3, 3, 2) * 2.5],
         {"mode": "bicubic", "padding_mode": "reflection"}, opset=16),
    Case("nms", "NonMaxSuppression", [np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, -0.1, 1, 0.9], [0, 10, 1, 11],
                                                 [0, 10.1, 1, 11.1], [0, 100, 1, 101]]], np.float32),
                                      np.array([[[0.9, 0.75, 0.6, 0.95, 0.5, 0.3]]], np.float32),
                                      C(i64(3)), C(np.array([0.5], np.float32)), C(np.array([0.0], np.float32))]),
    Case("nms_center_two_classes", "NonMaxSuppression", [np.array([[[0.5, 0.5, 1, 1], [0.5, 0.6, 1, 1], [0.5, 0.4, 1, 1], [0.5, 10.5, 1, 1]]], np.float32),
                                                         np.array([[[0.9, 0.75, 0.6, 0.95], [0.1, 0.8, 0.8, 0.2]]], np.float32),
                                                         C(i64(2)), C(np.array([0.5], np.float32))], {"center_point_box": 1}),
    Case("nms_random_batches", "NonMaxSuppression", [np.sort(RNG.random((2, 50, 4)).astype(np.float32) * 10, axis=-1)[..., [0, 1, 2, 3]],
                                                     RNG.random((2, 3, 50)).astype(np.float32),
                                                     C(i64(10)), C(np.array([0.3], np.float32)), C(np.array([0.2], np.float32))]),
    # ----- ... recurrent layers (paddle2onnx CRNN) ---------------------------------------------
    Case("lstm_forward", "LSTM", [f32(5, 2, 3), C(f32(1, 16, 3)), C(f32(1, 16, 4)), C(f32(1, 32))], {"hidden_size": 4}, outputs=3),
    Case("lstm_bidirectional_seq_lens_init", "LSTM",
         [f32(5, 3, 3), C(f32(2, 16, 3)), C(f32(2, 16, 4)), C(f32(2, 32)), C(np.array([5, 2, 0], np.int32)), f32(2, 3, 4), f32(2, 3, 4)],
         {"hidden_size": 4, "direction": "bidirectional"}, outputs=3),
    Case("lstm_reverse_peephole_clip", "LSTM",
         [f32(4, 2, 3), C(f32(1, 12, 3)), C(f32(1, 12, 3)), C(f32(1, 24)), None, None, None, C(f32(1, 9))],
         {"hidden_size": 3, "direction": "reverse", "clip": 0.5}, outputs=3),
    Case("lstm_input_forget_activations", "LSTM", [f32(4, 2, 3), C(f32(1, 12, 3)), C(f32(1, 12, 3))],
         {"hidden_size": 3, "input_forget": 1, "activations": ["HardSigmoid", "Tanh", "Softsign"],
          "activation_alpha": [0.3], "activation_beta": [0.4]}, outputs=2),
    Case("gru_bidirectional", "GRU", [f32(5, 2, 3), C(f32(2, 12, 3)), C(f32(2, 12, 4)), C(f32(2, 24))],
         {"hidden_size": 4, "direction": "bidirectional"}, outputs=2),
    Case("gru_linear_before_reset_seq_lens", "GRU",
         [f32(5, 2, 3), C(f32(1, 12, 3)), C(f32(1, 12, 4)), C(f32(1, 24)), C(np.array([3, 5], np.int32)), f32(1, 2, 4)],
         {"hidden_size": 4, "linear_before_reset": 1}, outputs=2),
    Case("gru_zero_length_sequence", "GRU",
         [f32(3, 2, 3), C(f32(1, 12, 3)), C(f32(1, 12, 4)), None, C(np.array([0, 3], np.int32)), f32(1, 2, 4)],
         {"hidden_size": 4, "direction": "reverse"}, outputs=2),
    Case("rnn_relu_reverse", "RNN", [f32(4, 2, 3), C(f32(1, 5, 3)), C(f32(1, 5, 5)), C(f32(1, 10))],
         {"hidden_size": 5, "direction": "reverse", "activations": ["Relu"]}, outputs=2),
]  # fmt: skip


def build_model(case: Case) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    names, inputs, inits, feeds = [], [], [], {}
    for i, v in enumerate(case.inputs):
        if v is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if isinstance(v, C):
            inits.append(onnx.numpy_helper.from_array(v.value, name))
        else:
            feeds[name] = v
            elem = helper.np_dtype_to_tensor_dtype(v.dtype)
            inputs.append(helper.make_tensor_value_info(name, elem, v.shape))
    while names and not names[-1]:
        names.pop()
    outs = [f"out{i}" for i in range(case.outputs)]
    node = helper.make_node(case.op, names, outs, name=f"{case.op.lower()}_0", **case.attrs)
    graph = helper.make_graph(
        [node], case.id, inputs, [onnx.ValueInfoProto(name=o) for o in outs], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return model, feeds


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.abs(b.astype(np.float64)).max()) if b.size else 0.0
    diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if b.size else 0.0
    return diff / scale if scale else diff


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_onnxruntime(case: Case) -> None:
    model, feeds = build_model(case)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    graph = import_onnx(model)
    with CpuRunner(graph) as runner:
        got = runner.infer(feeds)
    for name, want in expected.items():
        have = got[name]
        assert have.dtype == want.dtype, f"{name}: dtype {have.dtype} != {want.dtype}"
        assert have.shape == want.shape, f"{name}: shape {have.shape} != {want.shape}"
        if want.dtype.kind == "f":
            err = rel_err(have, want)
            assert err <= case.tol, f"{name}: max rel err {err:.3g} > {case.tol}"
        else:
            np.testing.assert_array_equal(have, want, err_msg=name)


def test_every_importable_op_has_an_implementation() -> None:
    missing = sorted(SUPPORTED_OPS - supported_ops())
    assert not missing, f"ops the importer accepts but the CPU backend lacks: {missing}"


def test_table_covers_the_foundation_op_list() -> None:
    # Ops that reach the backend only through other ops: Constant is folded to an initializer
    # by the importer, Upsample becomes Resize (both still have implementations, checked above).
    covered = {c.op for c in CASES} | {"Constant", "Upsample"}
    assert not sorted(SUPPORTED_OPS - covered)


def test_int8_qdq_conv_chain_matches_onnxruntime() -> None:
    """An INT8 model as exporters write it: Q/DQ around a Conv with per-channel INT8 weights."""
    w = RNG.standard_normal((8, 4, 3, 3)).astype(np.float32)
    w_scale = (np.abs(w).reshape(8, -1).max(axis=1) / 127).astype(np.float32)
    w_q = np.clip(np.rint(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    inits = [
        onnx.numpy_helper.from_array(w_q, "w_q"),
        onnx.numpy_helper.from_array(w_scale, "w_scale"),
        onnx.numpy_helper.from_array(np.zeros(8, np.int8), "w_zp"),
        onnx.numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
        onnx.numpy_helper.from_array(np.array(0, np.int8), "x_zp"),
        onnx.numpy_helper.from_array(np.array(0.05, np.float32), "y_scale"),
        onnx.numpy_helper.from_array(np.array(0, np.int8), "y_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["wd"], axis=0, name="dq_w"),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zp"], ["yq"], name="q_out"),
        helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"], name="dq_out"),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (1, 4, 10, 10))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, (1, 8, 10, 10))], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = RNG.standard_normal((1, 4, 10, 10)).astype(np.float32)
    options = ort.SessionOptions()
    # without graph optimisations ORT evaluates the Q/DQ graph as written (no QLinearConv fusion)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"x": x})
    with CpuRunner(import_onnx(model)) as runner:
        have = runner.infer({"x": x})["y"]
    steps = np.rint(np.abs(have - want) / 0.05)
    # float summation order may move a value across a rounding boundary: one step, rarely
    assert steps.max() <= 1 and (steps == 0).mean() >= 0.99, f"{int((steps > 0).sum())} values differ"


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"kernel_shape": [2, 2], "storage_order": 1},
        {"kernel_shape": [3, 2], "dilations": [2, 1], "ceil_mode": 1, "strides": [2, 2]},
    ],
    ids=["pads", "column-major", "dilated-ceil"],
)
def test_maxpool_indices_output(attrs: dict[str, Any]) -> None:
    """MaxPool's optional Indices output (the importer keeps it only when read; the backend
    computes it whenever the node has two outputs), run through ``evaluate_node`` directly."""
    from devices.cpu import evaluate_node
    from partitioner.ir import Graph

    case = Case("maxpool_idx", "MaxPool", [f32(2, 3, 7, 6)], attrs, outputs=2)
    model, feeds = build_model(case)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want_y, want_idx = session.run(None, feeds)
    g = Graph("g")
    x = g.add_input("in0", (2, 3, 7, 6), "float32")
    node = g.add_node("MaxPool", [x], 2, attrs, name="pool")
    got_y, got_idx = evaluate_node(node, [feeds["in0"]])
    np.testing.assert_array_equal(got_y, want_y)
    np.testing.assert_array_equal(got_idx, want_idx)


@pytest.mark.parametrize("op, gates", [("LSTM", 4), ("GRU", 3)])
def test_recurrent_layout1_is_layout0_transposed(op: str, gates: int) -> None:
    """ONNX Runtime refuses layout=1 (batch-major); it must be layout 0 with X, initial_h,
    Y and Y_h transposed."""
    from devices.cpu import evaluate_node
    from partitioner.ir import Graph

    x, h0 = f32(5, 2, 3), f32(1, 2, 4)
    w, r = f32(1, gates * 4, 3), f32(1, gates * 4, 4)

    def run(layout: int) -> list[np.ndarray]:
        g = Graph("g")
        ins = [g.add_input(n, None) for n in ("x", "w", "r")] + [None, None, g.add_input("h0", None)]
        node = g.add_node(op, ins, 2, {"hidden_size": 4, "layout": layout}, name="rec")
        xs, hs = (x.transpose(1, 0, 2), h0.transpose(1, 0, 2)) if layout else (x, h0)
        return evaluate_node(node, [xs, w, r, None, None, hs])

    y0, h_0 = run(0)[:2]
    y1, h_1 = run(1)[:2]
    np.testing.assert_array_equal(y1, y0.transpose(2, 0, 1, 3))
    np.testing.assert_array_equal(h_1, h_0.transpose(1, 0, 2))


def _one_layer(op: str, n_inputs: int, attrs: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    from partitioner.ir import Graph

    g = Graph("g")
    ins = [g.add_input(f"in{i}", None) for i in range(n_inputs)]
    return g.add_node(op, ins, 1, attrs or {}, name="bad")


@pytest.mark.parametrize(
    "op, inputs, message",
    [
        ("Range", [np.array(0.0, np.float32), np.array(1e12, np.float32), np.array(1.0, np.float32)],
         r"an output of 999999995904 elements would need 3\.64 TiB, more than the memory budget of 512 KiB"),
        ("Range", [np.array(0, np.int64), np.array(5, np.int64), np.array(0, np.int64)], "delta is 0"),
        ("Range", [np.array(0.0, np.float32), np.array(np.inf, np.float32), np.array(1.0, np.float32)],
         "give no finite length"),
        ("NonZero", [np.ones((64, 1024), np.float32)], "65536 non-zero positions would need 1 MiB"),
        ("ScatterND", [np.zeros((4, 3), np.float32), np.array([[4]], np.int64), np.ones((1, 3), np.float32)],
         r"ScatterND index 4 at \[0, 0\] is out of range for dim size 4"),
        ("GatherND", [np.zeros((4, 3), np.float32), np.array([[1, -4]], np.int64)],
         r"GatherND index -4 at \[0, 0, 1\] is out of range for dim size 3"),
        ("NonMaxSuppression", [np.zeros((1, 5, 4), np.float32), np.zeros((1, 2, 4), np.float32)],
         r"scores must be \[batch, classes, boxes\] = \[1, C, 5\], got \(1, 2, 4\)"),
    ],
)  # fmt: skip
def test_bad_inputs_and_data_dependent_sizes_fail_in_one_line(monkeypatch, op, inputs, message) -> None:  # type: ignore[no-untyped-def]
    """Ops whose output size depends on the data are refused before allocating past the memory
    budget; bad values name the layer, the op and what is wrong, in one line."""
    from devices.cpu import evaluate_node
    from partitioner.errors import ExecutionError

    monkeypatch.setenv("TANDEM_MEMORY_BUDGET", "512K")
    with pytest.raises(ExecutionError, match=f"^layer 'bad' \\({op}\\): .*{message}") as err:
        evaluate_node(_one_layer(op, len(inputs)), inputs)
    assert "\n" not in str(err.value)
