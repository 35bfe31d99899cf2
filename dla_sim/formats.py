"""DLA tensor formats: how many bytes a tensor takes as the hardware lays it out, and packing.

Formats (dla.md §1.3):

- ``dla_linear`` (kDLA_LINEAR): ``[N][C][H][roundUp(W, 64 / elem_size)]`` -- rows padded to 64 B.
- ``chw16`` (kCHW16, FP16): ``[N][ceil(C/16)][H][W][16]`` -- channels padded to a 32-byte atom.
- ``chw32`` (kCHW32, INT8): ``[N][ceil(C/32)][H][W][32]`` -- the same 32-byte atom in INT8.
- ``hwc4`` (kDLA_HWC4): ``[N][H][roundUp(W * 4 * elem, row_align)]`` with C <= 4 padded to 4.

Inside a loadable every feature map lives in the native format of its precision (``chw16`` for
FP16, ``chw32`` for INT8), which is what NVDLA's feature-data surfaces are; the latency model and
the loadable's memory plan both take their sizes from :func:`tensor_bytes`.
"""

from __future__ import annotations

import math

import numpy as np

from partitioner.errors import ShapeError

FORMATS = ("dla_linear", "chw16", "chw32", "hwc4")
ELEM_BYTES = {"float16": 2, "int8": 1, "uint8": 1}


def elem_bytes(dtype: str) -> int:
    try:
        return ELEM_BYTES[dtype]
    except KeyError:
        raise ShapeError(f"the DLA stores only float16 or int8 tensors, not {dtype}") from None


def native_format(dtype: str) -> str:
    """The DLA's own feature-map format for a storage dtype."""
    return "chw32" if elem_bytes(dtype) == 1 else "chw16"


def as_nchw(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """View any static shape as (batch, C, H, W): DLA "batch" is every dim before the last 3."""
    dims = [int(d) for d in shape]
    if len(dims) >= 3:
        return (math.prod(dims[:-3]), dims[-3], dims[-2], dims[-1])
    if len(dims) == 2:  # [N, features] as a 1x1 feature map (FullyConnected output)
        return (dims[0], dims[1], 1, 1)
    if len(dims) == 1:
        return (1, dims[0], 1, 1)
    return (1, 1, 1, 1)


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tensor_bytes(shape: tuple[int, ...], fmt: str, dtype: str, row_align: int = 64) -> int:
    """Bytes of a tensor of ``shape`` stored as ``fmt`` with elements of ``dtype``."""
    n, c, h, w = as_nchw(shape)
    e = elem_bytes(dtype)
    if fmt == "dla_linear":
        return n * c * h * round_up(w * e, 64)
    if fmt in ("chw16", "chw32"):
        atom = 32 // e  # channels per 32-byte atom: 16 FP16 or 32 INT8
        return n * round_up(c, atom) * h * w * e
    if fmt == "hwc4":
        if c > 4:
            raise ShapeError(f"kDLA_HWC4 takes at most 4 channels, got {c}")
        return n * h * round_up(w * 4 * e, row_align)
    raise ShapeError(f"unknown DLA tensor format '{fmt}'; known: {', '.join(FORMATS)}")


def pack(array: np.ndarray, fmt: str) -> np.ndarray:
    """Lay out an NCHW array as the DLA stores it (padding is zero). Returns a flat byte view."""
    n, c, h, w = as_nchw(array.shape)
    x = np.ascontiguousarray(array).reshape(n, c, h, w)
    e = elem_bytes(str(x.dtype))
    if fmt == "dla_linear":
        out = np.zeros((n, c, h, round_up(w * e, 64) // e), x.dtype)
        out[..., :w] = x
    elif fmt in ("chw16", "chw32"):
        atom = 32 // e
        if (fmt == "chw16") != (e == 2):
            raise ShapeError(f"format {fmt} does not hold {x.dtype} elements")
        padded = np.zeros((n, round_up(c, atom), h, w), x.dtype)
        padded[:, :c] = x
        out = padded.reshape(n, -1, atom, h, w).transpose(0, 1, 3, 4, 2)
    elif fmt == "hwc4":
        if c > 4:
            raise ShapeError(f"kDLA_HWC4 takes at most 4 channels, got {c}")
        row = round_up(w * 4 * e, 64) // e
        out = np.zeros((n, h, row), x.dtype)
        hwc = np.zeros((n, h, w, 4), x.dtype)
        hwc[..., :c] = x.transpose(0, 2, 3, 1)
        out[..., : w * 4] = hwc.reshape(n, h, w * 4)
    else:
        raise ShapeError(f"unknown DLA tensor format '{fmt}'; known: {', '.join(FORMATS)}")
    return np.ascontiguousarray(out).reshape(-1).view(np.uint8)


def unpack(buffer: np.ndarray, fmt: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Inverse of :func:`pack`: the NCHW array of ``shape`` from a DLA-format byte buffer."""
    n, c, h, w = as_nchw(shape)
    e = elem_bytes(dtype)
    expected = tensor_bytes(shape, fmt, dtype)
    if buffer.nbytes != expected:
        raise ShapeError(
            f"a {fmt} buffer for shape {tuple(shape)} {dtype} has {expected} bytes, "
            f"got {buffer.nbytes}"
        )
    flat = np.ascontiguousarray(buffer).reshape(-1).view(np.uint8).view(np.dtype(dtype))
    if fmt == "dla_linear":
        x = flat.reshape(n, c, h, -1)[..., :w]
    elif fmt in ("chw16", "chw32"):
        atom = 32 // e
        x = flat.reshape(n, -1, h, w, atom).transpose(0, 1, 4, 2, 3).reshape(n, -1, h, w)[:, :c]
    elif fmt == "hwc4":
        x = flat.reshape(n, h, -1)[..., : w * 4].reshape(n, h, w, 4)[..., :c].transpose(0, 3, 1, 2)
    else:
        raise ShapeError(f"unknown DLA tensor format '{fmt}'; known: {', '.join(FORMATS)}")
    return np.ascontiguousarray(x).reshape(shape)


def cbuf_banks_needed(
    channels: int,
    kernel_h: int,
    kernel_w: int,
    width: int,
    dilation_h: int,
    precision: str,
    weight_bank_bytes: int = 32768,
    data_bank_entries: int = 256,
) -> tuple[int, int]:
    """(weight banks for one kernel, minimum data banks) as TensorRT's CBUF check computes them.

    From the TensorRT 8.4 DLA FAQ pseudocode (dla.md §1.2): a convolution fails on the DLA when
    their sum exceeds the 16 banks of the convolution buffer. The bank sizes are the support
    table's (``devices/tables/dla*.yaml``, check ``cbuf``) where the support check asks.
    """
    e = 1 if precision == "int8" else 2
    wt_banks = math.ceil(round_up(channels * kernel_h * kernel_w * e, 128) / weight_bank_bytes)
    entries_per_slice = math.ceil(math.ceil(channels * e / 32) * width / 4)
    dilated_kh = (kernel_h - 1) * dilation_h + 1
    data_banks = math.ceil(entries_per_slice * dilated_kh / data_bank_entries)
    return wt_banks, data_banks
