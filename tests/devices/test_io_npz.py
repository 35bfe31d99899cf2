"""``.npz`` inputs: read member by member, header first, nothing allocated or read in vain."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.io import load_feeds
from partitioner.errors import InputError
from partitioner.ir import Graph

X = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)


def graph(shape: tuple = (2, 3, 4), dtype: str = "float32") -> Graph:
    g = Graph("inputs")
    g.add_input("x", shape, dtype)
    return g


def npy(array: np.ndarray | None = None, header: dict | None = None) -> bytes:
    out = io.BytesIO()
    if header is None:
        np.save(out, X if array is None else array, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue()


def archive(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def patched(path: Path, local: tuple[int, bytes], central: tuple[int, bytes]) -> Path:
    """The archive with one field of the first member's local and central headers replaced."""
    raw = bytearray(path.read_bytes())
    for magic, (offset, value) in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = raw.find(magic) + offset
        raw[at : at + len(value)] = value
    path.write_bytes(bytes(raw))
    return path


def test_a_valid_npz_loads_stored_or_compressed(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=X, extra=np.ones(3))
    np.savez_compressed(tmp_path / "b.npz", x=np.asfortranarray(X))
    for name in ("a.npz", "b.npz"):
        feeds = load_feeds(graph(), tmp_path / name)
        assert list(feeds) == ["x"]
        np.testing.assert_array_equal(feeds["x"], X)
    symbolic = load_feeds(graph(("batch", 3, 4)), tmp_path / "a.npz")
    np.testing.assert_array_equal(symbolic["x"], X)


def bad_inputs(tmp: Path) -> list[tuple[str, Path, str]]:
    (tmp / "raw.npz").write_bytes(bytes(range(256)) * 3)
    (tmp / "empty.npz").write_bytes(b"")
    np.save(tmp / "one.npy", X)
    (tmp / "one.npy").rename(tmp / "one.npz")
    ok = archive(tmp / "ok.npz", {"x.npy": npy()})
    enc = patched(archive(tmp / "enc.npz", {"x.npy": npy()}), (6, b"\x01"), (8, b"\x01"))
    method = patched(archive(tmp / "m.npz", {"x.npy": npy()}), (8, b"\x63\x00"), (10, b"\x63\x00"))
    huge = {"descr": "<f4", "fortran_order": False, "shape": (1_000_000, 1_000_000)}
    return [
        ("raw bytes", tmp / "raw.npz", "raw.npz: not an .npz file"),
        ("empty", tmp / "empty.npz", "empty.npz: is empty"),
        (".npy named .npz", tmp / "one.npz", "one.npz: a single .npy array, not an .npz"),
        ("missing input", archive(tmp / "no.npz", {"y.npy": npy()}), "missing input 'x'"),
        ("encrypted", enc, "enc.npz: member 'x.npy' is encrypted"),
        ("unknown compression", method, "m.npz: member 'x.npy' uses zip compression method 99"),
        ("1e12 elements", archive(tmp / "h.npz", {"x.npy": npy(header=huge)}),
         "h.npz: input 'x' has shape 1000000x1000000, expected 2x3x4"),
        ("object array", archive(tmp / "o.npz", {"x.npy": npy(np.array([None] * 24))}),
         "o.npz: member 'x.npy' holds dtype object"),
        ("wrong dtype", archive(tmp / "d.npz", {"x.npy": npy(X.astype(np.float64))}),
         "d.npz: input 'x' has dtype float64, expected float32"),
        ("truncated data", archive(tmp / "t.npz", {"x.npy": npy()[:-10]}),
         "t.npz: member 'x.npy' is truncated: 86 of 96 bytes"),
        ("not npy", archive(tmp / "n.npz", {"x.npy": b"hello"}), "n.npz: member 'x.npy' is not"),
        ("a directory", tmp, "is a directory"),
        ("no file", tmp / "none.npz", "none.npz: no such input file"),
        ("ok", ok, ""),
    ]


def test_each_bad_npz_is_one_line_naming_file_and_member(tmp_path: Path) -> None:
    for what, path, words in bad_inputs(tmp_path):
        if not words:
            load_feeds(graph(), path)
            continue
        with pytest.raises(InputError) as err:
            load_feeds(graph(), path)
        message = str(err.value)
        assert words in message, what
        assert "\n" not in message, what


def test_size_limit_applies_before_allocation_for_symbolic_dims(tmp_path: Path) -> None:
    header = {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)}
    path = archive(tmp_path / "big.npz", {"x.npy": npy(header=header)})
    with pytest.raises(InputError, match=r"member 'x.npy' claims shape \[1099511627776\]"):
        load_feeds(graph(("n",)), path)
    small = archive(tmp_path / "small.npz", {"x.npy": npy(np.zeros(100, np.float32))})
    with pytest.raises(InputError, match="over the 256-byte limit"):
        load_feeds(graph(("n",)), small, max_bytes=256)
    assert load_feeds(graph(("n",)), small, max_bytes=400)["x"].shape == (100,)


def test_unused_members_are_never_read(tmp_path: Path) -> None:
    """A corrupt member and a 64 MiB one beside the input: neither is touched."""
    path = tmp_path / "extra.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", npy())
        z.writestr("broken.npy", b"\x93NUMPY garbage")
        with z.open("unused.npy", "w") as w:
            w.write(npy(header={"descr": "<f4", "fortran_order": False, "shape": (1 << 24,)}))
            for _ in range(64):
                w.write(bytes(1 << 20))
    tracemalloc.start()
    try:
        feeds = load_feeds(graph(), path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(feeds["x"], X)
    assert peak < 4 << 20


SEED = io.BytesIO()
np.savez_compressed(SEED, x=X, extra=np.ones(3, np.int16))
mutation = st.tuples(st.integers(0, len(SEED.getvalue()) - 1), st.integers(1, 255))


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(mutation, min_size=1, max_size=4), st.integers(0, len(SEED.getvalue())))
def test_mutated_npz_never_escapes_input_error(tmp_path: Path, flips, cut: int) -> None:
    """Bit flips and truncations anywhere: the inputs load or one InputError names the file."""
    data = bytearray(SEED.getvalue())
    for pos, xor in flips:
        data[pos] ^= xor
    path = tmp_path / "fuzz.npz"
    path.write_bytes(bytes(data[: max(cut, 1)]))
    try:
        feeds = load_feeds(graph(), path)
    except InputError as err:
        assert str(err).startswith(str(path)) and "\n" not in str(err)
    else:
        assert feeds["x"].shape == X.shape and feeds["x"].dtype == X.dtype
