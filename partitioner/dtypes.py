"""ONNX element-type codes as numpy dtype names, without importing onnx.

Some attributes keep ONNX's integer codes (``Cast.to``, ``QuantizeLinear.output_dtype``,
``ConstantOfShape`` has a tensor instead); layers below the importer read them through this table
so that only the import/export modules need the onnx package.
"""

from __future__ import annotations

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
}
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


def onnx_dtype_code(name: str) -> int:
    """The ONNX element-type code for a numpy dtype name."""
    try:
        return NUMPY_TO_ONNX[name]
    except KeyError:
        raise ModelError(f"dtype '{name}' has no ONNX element type in Tandem") from None
