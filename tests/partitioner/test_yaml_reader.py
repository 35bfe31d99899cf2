"""The one YAML reader: hostile files end in one ConfigError line naming file, line or byte."""

from __future__ import annotations

import codecs
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from partitioner import yaml_reader
from partitioner.errors import ConfigError
from partitioner.yaml_reader import parse_yaml, read_yaml


def _refused(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("f.yaml"), message
    return message


def test_values_and_lines() -> None:
    doc = parse_yaml("a: 1\nb:\n  - x\n  - {c: yes, on: 0x10}\n", "f.yaml")
    assert doc.data == {"a": 1, "b": ["x", {"c": True, "on": 16}]}  # keys stay as written
    assert doc.where(("b", 1, "c")) == "f.yaml:4"
    assert doc.where(("b", 1, "missing")) == "f.yaml:4"  # the nearest parent that exists
    assert parse_yaml("", "f.yaml").data is None
    assert parse_yaml("\ufeffa: 1\n", "f.yaml").data == {"a": 1}  # UTF-8 with a BOM is UTF-8


@pytest.mark.parametrize(
    "text, message",
    [
        ("dla_core: !!int abc\n", "f.yaml:1: dla_core: YAML tags are not allowed"),
        ("gpu:\n  sms: !!int x\n", "f.yaml:2: gpu.sms: YAML tags are not allowed"),
        ("x: !!python/object/apply:os.system [ls]\n", "f.yaml:1: x: YAML tags are not allowed"),
        ("x: !!binary aGk=\n", "f.yaml:1: x: YAML tags are not allowed"),
        ("x: !local 3\n", "f.yaml:1: x: YAML tags are not allowed"),
        ("x: ! 3\n", "f.yaml:1: x: YAML tags are not allowed"),
        ("x: !!map {a: 1}\n", "f.yaml:1: x: YAML tags are not allowed"),
        ("!!str k: 1\n", "f.yaml:1: <document>: YAML tags are not allowed"),
        ("%TAG !e! tag:e.com,2000:\n---\nx: !e!t 1\n", "f.yaml:3: x: YAML tags are not allowed"),
    ],
)
def test_tags_are_refused(text: str, message: str) -> None:
    assert _refused(text) == message


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: 1\nb: 2\na: 3\n", "f.yaml:3: a: given twice"),
        ("base: &b {x: 1}\nc:\n  <<: *b\n", "f.yaml:3: c.<<: merge keys are not supported"),
        ("a: &a [1, *a]\n", "f.yaml:1: a[2]: alias *a names no earlier anchor"),
        ("a: 1\n---\nb: 2\n", "f.yaml:2: a second YAML document; expected one"),
        ("? [a]\n: 1\n", "f.yaml:1: <document>: mapping keys must be plain names"),
        ("a: [1\n", "f.yaml:2: invalid YAML: did not find expected ',' or ']'"),
        ("n: " + "9" * 5000 + "\n", "f.yaml:1: n: unreadable value '99999999"),
        ("a: \x1b\n", "f.yaml: byte 3: control character U+001B"),
    ],
)
def test_malformed_documents(text: str, message: str) -> None:
    assert _refused(text).startswith(message)


def test_nesting_is_capped_before_any_recursion_limit() -> None:
    deep = "a: " + "[" * (yaml_reader.MAX_DEPTH + 5) + "]" * (yaml_reader.MAX_DEPTH + 5)
    assert f"nested more than {yaml_reader.MAX_DEPTH} levels deep" in _refused(deep)
    flow = "{c: " * 3000 + "1" + "}" * 3000  # also deeper than libyaml's own limit
    _refused(flow)


def _billion_laughs() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\nnotes: *a9\n"


def test_billion_laughs_is_refused_fast_and_small() -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = _refused(_billion_laughs())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 100 << 20, peak
    assert f"more than {yaml_reader.MAX_VALUES} values" in message


def test_aliases_share_their_anchor_and_count_once_each() -> None:
    doc = parse_yaml("m: &m {x: 1}\nn: *m\n", "f.yaml")
    assert doc.data["n"] is doc.data["m"]  # no copy
    many = "a: &a 1\nb: [" + ", ".join(["*a"] * (yaml_reader.MAX_ALIASES + 1)) + "]\n"
    assert f"more than {yaml_reader.MAX_ALIASES} aliases" in _refused(many)


# ----- reading files: encoding, size, kind of file -----------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        ("# café\nprecision: fp16\n".encode("latin-1"), "byte 5: not UTF-8 text"),
        ("precision: fp16\n".encode("utf-16"), "byte 0: UTF-16 text (byte-order mark)"),
        (codecs.BOM_UTF16_BE + "a: 1\n".encode("utf-16-be"), "byte 0: UTF-16 text"),
        ("a: 1\n".encode("utf-32"), "byte 0: UTF-32 text (byte-order mark)"),
        ("precision: fp16\n".encode("utf-16-le"), "byte 1: control character U+0000 (is the"),
        ("precision: fp16\n".encode("utf-16-be"), "byte 0: control character U+0000 (is the"),
    ],
)
def test_only_utf8_is_read(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        read_yaml(path, "policy file")
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_size_is_bounded_before_reading_everything(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * yaml_reader.MAX_BYTES + b"\n")
    with pytest.raises(ConfigError, match=r"big\.yaml: target file is larger than 4 MiB"):
        read_yaml(path, "target file")


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ConfigError, match=r"policy file is not a regular file$"):
            read_yaml(path, "policy file")
    with pytest.raises(ConfigError, match=r"^cannot read policy file .*: No such file"):
        read_yaml(tmp_path / "none.yaml", "policy file")
