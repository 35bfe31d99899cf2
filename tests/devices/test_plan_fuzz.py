"""Fuzz the plan reader: thousands of mutated plan files, nothing escapes but TandemError."""

from __future__ import annotations

import json
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import plan as P
from devices.plan_header import required_keys
from partitioner.errors import TandemError
from tests.devices.test_plan import reseal, segment


def _seed() -> tuple[bytes, dict]:
    plan = P.Plan(P.new_header("orin-nx-16gb", "int8", segments=[segment("gpu_seg1", "gpu")]))
    plan.add_array("w", np.arange(12, dtype=np.float32).reshape(3, 4))
    plan.add_array("s", np.ones(3, dtype=np.int8))
    plan.add_bytes("cubin", b"\x7fELF" + bytes(range(60)), kind="cubin")
    raw = P.encode_plan(plan)
    return raw, P.decode_plan(raw).header


SEED, SEED_HEADER = _seed()
FUZZ = settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def _read(data: bytes, **kwargs) -> None:
    try:
        plan = P.decode_plan(data, **kwargs)
        for name in plan.blobs:
            blob = plan.blob(name)
            if blob.dtype is not None:
                blob.array()
    except TandemError as err:
        assert str(err)  # a message, always


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(SEED) - 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(SEED)), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(SEED)), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, len(SEED) - 1), st.just(0)),
)


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=6), st.booleans())
def test_mutated_bytes(mutations, verify: bool) -> None:
    data = bytearray(SEED)
    for kind, pos, value in mutations:
        pos = min(pos, len(data))
        if kind == "flip" and pos < len(data):
            data[pos] ^= value
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data.insert(pos, value)
        elif kind == "delete" and pos < len(data):
            del data[pos]
    _read(bytes(data), verify=verify, expect_target="orin-nx-16gb")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
header_keys = st.sampled_from([*required_keys(), "offset", "size", "dtype", "shape", "kind"])


@FUZZ
@given(st.data())
def test_resealed_headers(data) -> None:
    """Checksum-valid files with hostile headers: exercises the validator, not just the hash."""
    header = json.loads(json.dumps(SEED_HEADER))
    for _ in range(data.draw(st.integers(1, 4))):
        path = [header]
        node = header
        while isinstance(node, dict) and node and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(node)))
            path.append(node[key])
            node = node[key]
        target = path[-2] if len(path) > 1 and isinstance(path[-2], dict) else header
        action = data.draw(st.sampled_from(["set", "delete"]))
        key = data.draw(header_keys | st.sampled_from(sorted(target) or ["x"]))
        if action == "delete":
            target.pop(key, None)
        else:
            target[key] = data.draw(json_values)
    _read(reseal(SEED, header))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_after_magic(tail: bytes) -> None:
    _read(P.MAGIC + tail)
    _read(tail)


def test_deep_json_header() -> None:
    """A checksum-valid header nested 100 000 deep must not blow the stack past our error type."""
    head = b"[" * 100_000 + b"]" * 100_000
    magic, version, reserved, _, _, _ = P._PRELUDE.unpack_from(SEED, 0)
    body = head + b"\0" * (P._align(64 + len(head)) - 64 - len(head))
    head32 = struct.pack("<8sIIQQ", magic, version, reserved, len(head), 64 + len(body))
    _read(head32 + P._checksum(head32, body) + body)
