"""DLA tensor formats, the CBUF check, and the loadable's binary format."""

from __future__ import annotations

import numpy as np
import pytest

from dla_sim import formats
from dla_sim.compiler import DlaCompileError, compile_loadable
from dla_sim.loadable import FORMAT_MAJOR, Loadable, LoadableError
from tests.dla_sim.graphs import Builder


@pytest.mark.parametrize(
    "shape, fmt, dtype, expected",
    [
        ((1, 3, 224, 224), "dla_linear", "float16", 3 * 224 * 448),  # 448 B rows: 64 B-aligned
        ((1, 3, 5, 5), "dla_linear", "float16", 3 * 5 * 64),  # 10 B rows padded to 64
        ((1, 3, 5, 5), "dla_linear", "int8", 3 * 5 * 64),
        ((1, 17, 4, 4), "chw16", "float16", 32 * 16 * 2),  # 17 channels -> 2 atoms of 16
        ((1, 33, 4, 4), "chw32", "int8", 64 * 16),  # 33 channels -> 2 atoms of 32
        ((2, 64, 7, 7), "chw32", "int8", 2 * 64 * 49),
        ((1, 3, 2, 10), "hwc4", "int8", 2 * 64),  # 10 px * 4 ch = 40 B -> one 64 B row
        ((4, 1000), "chw16", "float16", 4 * 1008 * 2),  # FC output as 1x1 maps
    ],
)
def test_tensor_bytes_as_the_hardware_lays_them_out(
    shape: tuple[int, ...], fmt: str, dtype: str, expected: int
) -> None:
    assert formats.tensor_bytes(shape, fmt, dtype) == expected


@pytest.mark.parametrize(
    "fmt, dtype, shape",
    [
        ("dla_linear", "float16", (2, 3, 5, 7)),
        ("chw16", "float16", (1, 19, 3, 4)),
        ("chw32", "int8", (2, 40, 3, 3)),
        ("hwc4", "int8", (1, 3, 4, 5)),
    ],
)
def test_pack_unpack_round_trip(fmt: str, dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 50).astype(dtype)
    buf = formats.pack(x, fmt)
    assert buf.nbytes == formats.tensor_bytes(shape, fmt, dtype)
    np.testing.assert_array_equal(formats.unpack(buf, fmt, shape, dtype), x)


def test_chw16_puts_sixteen_channels_of_a_pixel_together() -> None:
    x = np.arange(17 * 2 * 1, dtype=np.float16).reshape(1, 17, 2, 1)
    packed = formats.pack(x, "chw16").view(np.float16)
    # first atom: pixel (0,0), channels 0..15
    np.testing.assert_array_equal(packed[:16], x[0, :16, 0, 0])
    # second atom group holds channel 16 then 15 zeros of padding
    assert packed[32] == x[0, 16, 0, 0] and not packed[33:48].any()


@pytest.mark.parametrize(
    "c, r, s, w, dil, precision, wt_banks, data_banks",
    [
        # TensorRT 8.4 FAQ pseudocode by hand: wt = ceil(roundUp(C*R*S*e, 128) / 32768),
        # data = ceil(ceil(ceil(C*e/32) * W / 4) * ((R-1)*dil+1) / 256)
        (512, 3, 3, 160, 1, "int8", 1, 8),  # 4608 B; 640 entries * 3 rows / 256 -> 8 banks
        (512, 3, 3, 160, 1, "fp16", 1, 15),  # 9216 B; 1280 entries * 3 rows / 256 -> 15
        (64, 7, 7, 224, 1, "fp16", 1, 7),  # 6272 B; 224 entries * 7 rows / 256 -> 7
        (2048, 3, 3, 8, 2, "int8", 1, 3),  # 18432 B; 128 entries * 5 rows / 256 -> 3
    ],
)
def test_cbuf_banks_follow_tensorrt_check(
    c: int, r: int, s: int, w: int, dil: int, precision: str, wt_banks: int, data_banks: int
) -> None:
    assert formats.cbuf_banks_needed(c, r, s, w, dil, precision) == (wt_banks, data_banks)


def test_conv_that_overflows_the_cbuf_is_refused_with_the_layer_named() -> None:
    # 512 channels 3x3 at width 1024 in FP16: data banks ceil(ceil(32*1024/4)*3/256) = 96 > 16
    b = Builder("big")
    x = b.input("x", (1, 512, 3, 1024))
    y = b.conv(x, np.zeros((8, 512, 3, 3)), pads=(1, 1, 1, 1), name="wide_conv")
    g = b.output(y)
    with pytest.raises(DlaCompileError, match="wide_conv.*CBUF banks > 16"):
        compile_loadable(g, "fp16", 2)


def _small_loadable() -> Loadable:
    b = Builder("tiny")
    x = b.input("x", (1, 3, 8, 8))
    y = b.conv(
        x, np.random.default_rng(1).standard_normal((4, 3, 3, 3)), np.ones(4), pads=(1, 1, 1, 1)
    )
    r = b.op("Relu", [y], (1, 4, 8, 8))
    p = b.op("MaxPool", [r], (1, 4, 4, 4), kernel_shape=[2, 2], strides=[2, 2], pads=[0] * 4)
    g = b.output(p)
    return compile_loadable(g, "int8", 2, {"x": 0.02, y.name: 0.05, r.name: 0.05, p.name: 0.05})


def test_loadable_round_trips_exactly() -> None:
    lo = _small_loadable()
    data = lo.to_bytes()
    back = Loadable.from_bytes(data)
    assert back.to_bytes() == data
    assert back.ops == lo.ops and back.tensors == lo.tensors
    for name, blob in lo.blobs.items():
        assert back.blobs[name].dtype == blob.dtype
        np.testing.assert_array_equal(back.blobs[name], blob)
    assert data[:8] == b"TDLALOAD"
    header_len = int.from_bytes(data[16:24], "little")
    blob_start = int.from_bytes(data[24:32], "little")
    assert blob_start % 64 == 0 and blob_start >= 64 + header_len


def test_loadable_refuses_corruption_other_versions_and_foreign_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(_small_loadable().to_bytes())
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    with pytest.raises(LoadableError, match="checksum"):
        Loadable.from_bytes(bytes(flipped))
    newer = bytearray(data)
    newer[8:10] = (FORMAT_MAJOR + 1).to_bytes(2, "little")
    with pytest.raises(LoadableError, match=f"format {FORMAT_MAJOR + 1}.0"):
        Loadable.from_bytes(bytes(newer))
    with pytest.raises(LoadableError, match="not a Tandem DLA loadable"):
        Loadable.from_bytes(b"\x80\x04pickle-not-welcome" + b"\0" * 64)
    with pytest.raises(LoadableError, match="truncated"):
        Loadable.from_bytes(bytes(data[:-10]))
    path = tmp_path / "seg.dla"
    _small_loadable().save(str(path))
    assert Loadable.load(str(path)).name == "tiny"


def test_int8_loadable_stores_int8_weights_with_per_channel_scales() -> None:
    lo = _small_loadable()
    conv = lo.ops[0]
    # conv + ReLU (SDP) + max-pool (PDP on the fly) run as one hardware operation
    assert len(lo.ops) == 1 and len(conv.layers) == 3 and conv.params["pool"]["mode"] == "max"
    assert lo.blobs[conv.blobs["weights"]].dtype == np.int8
    assert lo.blobs[conv.blobs["bias"]].dtype == np.int32
    assert lo.blobs[conv.blobs["wscale"]].shape == (4,)
    assert lo.tensors["x"].format == "chw32" and lo.tensors["x"].dtype == "int8"
