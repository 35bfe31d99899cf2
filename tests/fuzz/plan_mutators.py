"""Mutations of a built plan. Header edits are re-checksummed the way a forger would (the tests'
``reseal``), so they reach the header validator and the runtime instead of stopping at the
SHA-256; loadable edits re-CRC the loadable and re-encode the plan with ``encode_plan``; byte
edits (not resealed) check that damage is still refused in one line.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from pathlib import Path
from typing import Any

from devices import plan as P
from dla_sim.loadable import _PREAMBLE as PREAMBLE  # the layout LOADABLE.md specifies
from tests.devices.test_plan import reseal

JSON_VALUES: list[Any] = [
    None, -1, 0, 2**64, 1e308, "", "dla7", [], {}, "x" * 10_000, True, [[[[[]]]]], {"a": None},
    "\ud800", -(2**63), 0.5, ["gpu"], {"value": "x"},
]  # fmt: skip

# Fields the runtime reads, with values of the right shape but hostile content.
TARGETED: list[tuple[str, list[Any]]] = [
    ("segments.*.name", [None, 7, "", "../x"]),
    ("segments.*.device", ["dla7", "gpu9", "cpu", "", None, "dla-1"]),
    ("segments.*.backend", ["nope", "", None, "cuda"]),
    ("segments.*.loadable", ["no/such/blob", "gpu_1/cubin/0", None, 5]),
    ("segments.*.inputs", [[], ["no_such"], None, [1]]),
    ("segments.*.graph.nodes.*.attrs",
     [{"strides": {"value": "x"}}, [], {"pads": {"value": [-9] * 4}}]),
    ("segments.*.graph.tensors.*.shape", [[-1], [10**12, 10**12], None, ["a"], [0]]),
    ("segments.*.graph.tensors.*.dtype", ["object", "float128", "<U8", None, "V8"]),
    ("segments.*.graph.nodes.*.op", ["NoSuchOp", "", None]),
    ("segments.*.cuda.modules.*.blob", ["no/such", None]),
    ("inputs.*.shape", [[10**12], [-1, 3], None, [], [1, 3, 32, 32, 1]]),
    ("inputs.*.dtype", ["object", "float128", None, "string"]),
    ("outputs.*.name", ["", None, "no_such"]),
    ("profiles", [[{"min": "x"}], [None], "x", [{"input": {"min": [-1], "max": [10**12]}}]]),
    ("plugins", [[{"op": 5}], "x", [None], {"a": 1}]),
    ("tandem_version", ["9.0", "", "x", "0"]),
    ("format_version", [2, 0, -1]),
    ("target", ["xavier-agx", "", "../../x"]),
    ("precision", ["int4", "", None]),
    ("blobs.*.offset", [1, 2**62, -64]),
    ("blobs.*.dtype", ["object", "<U8", "float128"]),
    ("blobs.*.shape", [[10**12], [-1], [2**39, 2**39]]),
]  # fmt: skip


def _paths(node: Any, pattern: list[str]) -> list[tuple[Any, Any]]:
    """(container, key) pairs matching a dotted pattern where ``*`` is any list item / dict key."""
    if not pattern:
        return []
    head, rest = pattern[0], pattern[1:]
    keys: Any
    if head == "*" and isinstance(node, list):
        keys = range(len(node))
    elif head == "*":
        keys = list(node) if isinstance(node, dict) else []
    else:
        keys = [head] if isinstance(node, dict) else []
    found = []
    for key in keys:
        if not rest:
            found.append((node, key))
        elif (isinstance(node, dict) and key in node) or isinstance(node, list):
            found += _paths(node[key], rest)
    return found


def header_targeted(rng: random.Random, raw: bytes, header: dict) -> tuple[str, bytes]:
    path, values = rng.choice(TARGETED)
    places = _paths(header, path.split("."))
    value = rng.choice(values)
    if places:
        container, key = rng.choice(places)
        if rng.random() < 0.15 and isinstance(container, dict):
            container.pop(key, None)
            return f"header-{path}-deleted", reseal(raw, header)
        container[key] = value
    else:  # an absent optional field (plugins): add it
        header[path.split(".")[0]] = value
    return f"header-{path}", reseal(raw, header)


def header_random(rng: random.Random, raw: bytes, header: dict) -> tuple[str, bytes]:
    """A random walk into the header, then a set or a delete (as test_plan_fuzz does)."""
    node: Any = header
    parent: Any = header
    key: Any = rng.choice(sorted(header))
    while True:
        child = parent[key]
        if isinstance(child, dict) and child and rng.random() < 0.7:
            parent, key = child, rng.choice(sorted(child))
        elif isinstance(child, list) and child and rng.random() < 0.7:
            parent, key = child, rng.randrange(len(child))
        else:
            break
    node = parent
    if isinstance(node, dict) and rng.random() < 0.3:
        del node[key]
        return "header-delete", reseal(raw, header)
    node[key] = rng.choice(JSON_VALUES)
    return "header-set", reseal(raw, header)


def prelude_version(rng: random.Random, raw: bytes, header: dict) -> tuple[str, bytes]:
    return "prelude-version", reseal(raw, header, version=rng.choice([0, 2, 2**32 - 1]))


def loadable_params(rng: random.Random, raw: bytes, header: dict) -> tuple[str, bytes]:
    """A DLA loadable whose op parameters are hostile (stride 0, ...), with a valid CRC."""
    plan = P.decode_plan(raw, verify=False)
    name = rng.choice([n for n, b in plan.blobs.items() if b.kind == "dla-loadable"])
    data = bytes(plan.blobs[name].data)
    magic, major, minor, flags, head_len, blob_start, _, _ = PREAMBLE.unpack_from(data, 0)
    head = json.loads(data[64 : 64 + head_len])
    ops = head["ops"]
    op = rng.choice(ops)
    key, value = rng.choice(
        [("strides", [0, 0]), ("kernel", [0, 0]), ("kernel", [10**6, 10**6]), ("pads", [-5] * 4),
         ("group", 0), ("dilations", [0, 0]), ("out_channels", -1), ("mode", "nope")]
    )  # fmt: skip
    op.setdefault("params", {})[key] = value
    new_head = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
    start = -(-(64 + len(new_head)) // 64) * 64
    body = new_head + b"\0" * (start - 64 - len(new_head)) + data[blob_start:]
    crc = zlib.crc32(body) & 0xFFFFFFFF
    loadable = PREAMBLE.pack(magic, major, minor, flags, len(new_head), start, 64 + len(body), crc)
    plan.blobs[name] = P.Blob(loadable + body, "dla-loadable")
    return f"loadable-{op.get('engine', '?')}-{key}", P.encode_plan(plan)


def damaged(rng: random.Random, raw: bytes, header: dict) -> tuple[str, bytes]:
    how = rng.choice(["flip", "truncate", "append"])
    if how == "truncate":
        return "bytes-truncate", raw[: rng.randrange(len(raw))]
    if how == "append":
        return "bytes-append", raw + b"\0" * rng.randint(1, 4096)
    buf = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
    return "bytes-flip", bytes(buf)


MUTATIONS = [header_targeted, loadable_params, header_random, header_targeted, damaged,
             prelude_version]  # fmt: skip


def mutate(rng: random.Random, seed: bytes, case_dir: Path, index: int) -> tuple[str, bytes]:
    head_len = struct.unpack_from("<Q", seed, 16)[0]
    header = json.loads(seed[64 : 64 + head_len])
    return MUTATIONS[index % len(MUTATIONS)](rng, seed, header)
