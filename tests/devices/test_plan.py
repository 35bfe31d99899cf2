"""Plan file: round trip, alignment, atomic write, and each refusal with its message."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from devices import plan as P
from devices.plan import Plan, PlanError, new_header, read_plan, write_plan
from partitioner.errors import TandemError


def segment(name: str, device: str, **extra) -> dict:
    """A segment record as the builder writes one: one ReLU layer ``x -> y``."""
    graph = {
        "format": "tandem-ir-1",
        "name": name,
        "opset": 17,
        "tensors": [
            {"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"},
            {"name": "y", "shape": [1, 3, 8, 8], "dtype": "float32"},
        ],
        "nodes": [
            {"name": f"{name}.relu", "op": "Relu", "domain": "", "attrs": {},
             "inputs": ["x"], "outputs": ["y"]},
        ],
        "inputs": ["x"],
        "outputs": ["y"],
    }
    return {"name": name, "device": device, "precision": "fp16", "layers": [f"{name}.relu"],
            "inputs": ["x"], "outputs": ["y"], "graph": graph, **extra}


def sample_plan(target: str = "orin-agx-64gb") -> Plan:
    rng = np.random.default_rng(0)
    header = new_header(
        target,
        "fp16",
        segments=[
            segment("dla0_seg1", "dla0", backend="dla-emu", loadable="seg1.loadable"),
            segment("gpu_seg2", "gpu", backend="cuda"),
        ],
        inputs=[{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}],
        outputs=[{"name": "y", "shape": [1, 4], "dtype": "float32"}],
        metadata={"model": "tiny.onnx", "note": "ünïcode ok"},
    )
    plan = Plan(header)
    plan.add_array("conv1.w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    plan.add_array("fc.b", rng.standard_normal(7).astype(np.float16))
    plan.add_array("idx", np.arange(5, dtype=np.int64))
    plan.add_bytes("seg1.loadable", b"\x01\x02\x03" * 11, kind="dla-loadable")
    plan.add_bytes("empty", b"", kind="cubin")
    return plan


def test_round_trip_keeps_header_blobs_and_alignment(tmp_path: Path) -> None:
    original = sample_plan()
    path = write_plan(original, tmp_path / "m.plan")
    loaded = read_plan(path, expect_target="orin-agx-64gb")
    assert loaded.header["segments"] == original.header["segments"]
    assert loaded.header["metadata"]["note"] == "ünïcode ok"
    for name in ("conv1.w", "fc.b", "idx"):
        np.testing.assert_array_equal(loaded.array(name), original.array(name))
        assert loaded.array(name).dtype == original.array(name).dtype
    assert bytes(loaded.blob("seg1.loadable").data) == b"\x01\x02\x03" * 11
    assert loaded.blob("seg1.loadable").kind == "dla-loadable"
    assert bytes(loaded.blob("empty").data) == b""
    raw = path.read_bytes()
    _, _, _, head_len, file_len, _ = P._PRELUDE.unpack_from(raw, 0)
    body = P._align(P.PRELUDE_SIZE + head_len)
    assert file_len == len(raw)
    for entry in loaded.header["blobs"].values():
        assert (body + entry["offset"]) % 64 == 0
    with pytest.raises(ValueError):
        loaded.array("conv1.w")[0, 0, 0, 0] = 1.0  # memory-mapped blobs are read-only


def test_big_endian_arrays_are_stored_little_endian(tmp_path: Path) -> None:
    plan = Plan(new_header("host", "fp32"))
    plan.add_array("w", np.arange(6, dtype=">i4").reshape(2, 3))
    loaded = read_plan(write_plan(plan, tmp_path / "b.plan"))
    np.testing.assert_array_equal(loaded.array("w"), np.arange(6).reshape(2, 3))


def test_bytes_are_deterministic(tmp_path: Path) -> None:
    a = P.encode_plan(sample_plan())
    b = P.encode_plan(sample_plan())
    assert a == b


def corrupt(raw: bytes, offset: int, xor: int = 0x01) -> bytes:
    data = bytearray(raw)
    data[offset] ^= xor
    return bytes(data)


def reseal(raw: bytes, header: dict | None = None, version: int | None = None) -> bytes:
    """Rewrite the header (and/or prelude version) and recompute the checksum, as a forger would."""
    magic, ver, res, head_len, _, _ = P._PRELUDE.unpack_from(raw, 0)
    old_body = P._align(P.PRELUDE_SIZE + head_len)
    blobs = raw[old_body:]
    head = json.dumps(header).encode() if header is not None else raw[64 : 64 + head_len]
    pad = b"\0" * (P._align(64 + len(head)) - 64 - len(head))
    body = head + pad + blobs
    ver = ver if version is None else version
    total = 64 + len(body)
    head32 = struct.pack("<8sIIQQ", magic, ver, res, len(head), total)
    return head32 + P._checksum(head32, body) + body


REFUSALS = [
    # (name, mutate(raw, header) -> bytes, words the message must contain)
    ("truncated", lambda raw, h: raw[: len(raw) - 100], ["truncated", "again"]),
    ("truncated-prelude", lambda raw, h: raw[:20], ["truncated"]),
    ("empty", lambda raw, h: b"", ["empty"]),
    ("bit-flip-in-blob", lambda raw, h: corrupt(raw, len(raw) - 70), ["SHA-256", "again"]),
    ("bit-flip-in-header", lambda raw, h: corrupt(raw, 80, 0x20), ["SHA-256"]),
    ("wrong-magic", lambda raw, h: b"PK\x03\x04" + raw[4:], ["not a Tandem plan", "tandem build"]),
    ("onnx-file", lambda raw, h: b"\x08\x07\x12\x07pytorch" + b"\0" * 80, ["not a Tandem plan"]),
    (
        "format-version",
        lambda raw, h: reseal(raw, version=2),
        ["format version 2", "reads version 1", "rebuild"],
    ),
    (
        "tandem-major",
        lambda raw, h: reseal(raw, {**h, "tandem_version": "7.0.0"}),
        ["Tandem 7.0.0", "another major version", "rebuild"],
    ),
    ("trailing-bytes", lambda raw, h: raw + b"\0" * 5, ["after the end"]),
    (
        "missing-key",
        lambda raw, h: reseal(raw, {k: v for k, v in h.items() if k != "segments"}),
        ["lacks 'segments'"],
    ),
    (
        "blob-out-of-range",
        lambda raw, h: reseal(
            raw, {**h, "blobs": {**h["blobs"], "idx": {**h["blobs"]["idx"], "offset": 1 << 30}}}
        ),
        ["blob 'idx'", "outside"],
    ),
    (
        "blob-shape-mismatch",
        lambda raw, h: reseal(
            raw, {**h, "blobs": {**h["blobs"], "idx": {**h["blobs"]["idx"], "shape": [6]}}}
        ),
        ["needs 48"],
    ),
]


@pytest.mark.parametrize("name,mutate,words", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_say_which_and_what_to_do(tmp_path: Path, name, mutate, words) -> None:
    good = write_plan(sample_plan(), tmp_path / "good.plan")
    header = read_plan(good).header
    bad = tmp_path / "bad.plan"
    bad.write_bytes(mutate(good.read_bytes(), header))
    with pytest.raises(PlanError) as info:
        read_plan(bad)
    message = str(info.value)
    assert str(bad) in message
    for word in words:
        assert word in message, (word, message)


def test_wrong_target_is_refused_with_the_rebuild_command(tmp_path: Path) -> None:
    path = write_plan(sample_plan("orin-agx-64gb"), tmp_path / "m.plan")
    with pytest.raises(
        PlanError, match="built for target 'orin-agx-64gb', not 'xavier-nx'"
    ) as info:
        read_plan(path, expect_target="xavier-nx")
    assert "tandem build MODEL.onnx --target xavier-nx" in str(info.value)
    assert read_plan(path).target == "orin-agx-64gb"  # no expectation: readable anywhere


def test_minor_version_difference_is_accepted(tmp_path: Path) -> None:
    ours = P.compat_key(P.tandem_version())
    same = ".".join(str(x) for x in ours) + (".0" if len(ours) == 2 else ".9") + ".7"
    good = write_plan(sample_plan(), tmp_path / "good.plan")
    raw = reseal(good.read_bytes(), {**read_plan(good).header, "tandem_version": same})
    (tmp_path / "other.plan").write_bytes(raw)
    assert read_plan(tmp_path / "other.plan").header["tandem_version"] == same


@pytest.mark.parametrize(
    "version,key", [("0.1.0", (0, 1)), ("0.2.5rc1", (0, 2)), ("1.4.2", (1,)), ("12", (12,))]
)
def test_compat_key(version: str, key: tuple[int, ...]) -> None:
    assert P.compat_key(version) == key


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="does not exist"):
        read_plan(tmp_path / "nope.plan")
    with pytest.raises(PlanError, match="directory"):
        read_plan(tmp_path)


def test_header_must_be_json_serialisable(tmp_path: Path) -> None:
    plan = sample_plan()
    plan.header["metadata"] = {"bad": object()}
    with pytest.raises(PlanError, match="not JSON-serialisable"):
        write_plan(plan, tmp_path / "x.plan")
    assert not any(tmp_path.iterdir())  # nothing left behind


def test_no_pickle_object_arrays_refused() -> None:
    with pytest.raises(PlanError, match="cannot store a object array"):
        Blob = P.Blob
        Blob.from_array(np.array([{"a": 1}], dtype=object))


def test_interrupted_write_never_leaves_the_final_name(tmp_path: Path) -> None:
    """A writer killed mid-write (SIGKILL, no cleanup) leaves no file under the final name."""
    big = tmp_path / "big.plan"
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from devices import plan as P
        real_write = os.fsync
        def die(fd):  # the data is written but not yet renamed: the worst moment to die
            os.kill(os.getpid(), 9)
        os.fsync = die
        p = P.Plan(P.new_header("host", "fp32"))
        p.add_array("w", np.zeros((1 << 20,), np.float32))
        P.write_plan(p, {str(big)!r})
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parents[2], capture_output=True
    )
    assert proc.returncode == -9, proc.stderr.decode()
    assert not big.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers and all(n.startswith(".big.plan.") and n.endswith(".tmp") for n in leftovers)
    # and a later write succeeds over the debris
    write_plan(sample_plan(), big)
    assert read_plan(big).target == "orin-agx-64gb"


def test_overwrite_is_atomic_replacement(tmp_path: Path) -> None:
    path = tmp_path / "m.plan"
    write_plan(sample_plan("a"), path)
    inode = os.stat(path).st_ino
    held = read_plan(path)  # a reader holding the old mapping keeps valid data
    write_plan(sample_plan("b"), path)
    assert os.stat(path).st_ino != inode
    assert held.target == "a" and held.array("idx").tolist() == [0, 1, 2, 3, 4]
    assert read_plan(path).target == "b"


def test_plan_error_is_a_tandem_error() -> None:
    assert issubclass(PlanError, TandemError)
