"""ONNX element-type codes as numpy dtype names, without importing onnx.

Some attributes keep ONNX's integer codes (``Cast.to``, ``QuantizeLinear.output_dtype``,
``ConstantOfShape`` has a tensor instead); layers below the importer read them through this table
so that only the import/export modules need the onnx package.

The narrow floating-point and sub-byte integer types (bfloat16, float8, float4, int4, int2) are
``ml_dtypes`` scalar types; importing ``ml_dtypes`` here registers their names with numpy, so
``np.dtype("bfloat16")`` works wherever an IR dtype name is turned back into a numpy dtype.
Strings are numpy ``object`` arrays of ``str``, as ``onnx.numpy_helper`` reads them.
"""

from __future__ import annotations

import ml_dtypes  # noqa: F401  (registers bfloat16, float8_*, int4... with numpy)

from partitioner.errors import ModelError

# TensorProto.DataType codes (stable across onnx releases; see onnx.proto).
ONNX_TO_NUMPY: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    8: "object",  # STRING
    16: "bfloat16",
    17: "float8_e4m3fn",
    18: "float8_e4m3fnuz",
    19: "float8_e5m2",
    20: "float8_e5m2fnuz",
    21: "uint4",
    22: "int4",
    23: "float4_e2m1fn",
    24: "float8_e8m0fnu",
    25: "uint2",
    26: "int2",
}
# Types numpy itself does not compute in: ml_dtypes floats (kind "V") are converted to float32
# for arithmetic, sub-byte integers to int8 / uint8.
NARROW_FLOATS = frozenset(
    {"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
     "float4_e2m1fn", "float8_e8m0fnu"}
)  # fmt: skip
SUB_BYTE_INTS = frozenset({"uint4", "int4", "uint2", "int2"})
NUMPY_TO_ONNX: dict[str, int] = {v: k for k, v in ONNX_TO_NUMPY.items()}


def numpy_dtype_name(code: int) -> str:
    """The numpy dtype name for an ONNX element-type code."""
    try:
        return ONNX_TO_NUMPY[int(code)]
    except KeyError:
        raise ModelError(
            f"ONNX element type {code} is not supported; expected one of "
            f"{', '.join(sorted(ONNX_TO_NUMPY.values()))}"
        ) from None
