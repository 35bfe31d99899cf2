"""The one YAML reader for what users write: policies, targets, support tables and inventories.

It returns plain Python data plus the 1-based line of every mapping key, list item and scalar,
keyed by *path* (``("gpu", "sms")``, ``("power_modes", 2, "name")``), so validators can say
``board.yaml:7: gpu.sms: expected a positive integer, got 0``.

A config file is untrusted input, so reading is bounded before anything is allocated:
- at most :data:`MAX_BYTES` are read, from a regular file only (``/dev/zero`` or a FIFO would
  never end), and the bytes must be UTF-8; anything else is refused naming the byte offset;
- the libyaml (or PyYAML) parser only produces *events*; this module composes them itself, so
  explicit tags (``!!int abc``, ``!!python/object``) are refused before any constructor runs,
  nesting is capped at :data:`MAX_DEPTH` (no recursion limit is ever reached), repeated keys
  are an error instead of "last one wins", and every alias is charged the size of the value it
  repeats, so a billion-laughs file stops at :data:`MAX_VALUES` in milliseconds. An alias
  shares the Python object of its anchor; nothing is copied.
- scalars are resolved and constructed with SafeLoader's rules (``yes`` -> True, ``0x10`` -> 16).
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from partitioner.errors import ConfigError

PathKey = tuple[str | int, ...]

MAX_BYTES = 4 << 20  # a support table is 14 kB; an inventory of 10,000 boards about 1 MB
MAX_DEPTH = 100  # mapping/list levels; Tandem's own formats use fewer than 10
MAX_VALUES = 200_000  # scalars, mappings and lists after alias expansion (10,000 boards fit)
MAX_ALIASES = 10_000

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present (fast)
_STR = "tag:yaml.org,2002:str"
# YAML 1.1's printable set; anything else (NUL from UTF-16 without a BOM, ESC, ...) is refused.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


@dataclass
class YamlDoc:
    """A parsed YAML document plus the line of every mapping key, list item and scalar.

    ``lines`` is empty for data that did not come from a file (``Policy.from_dict``); messages
    then name the source without a line.
    """

    source: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: PathKey) -> int | None:
        """Line of ``path``, or of its closest ancestor that has one."""
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p)

    def where(self, path: PathKey) -> str:
        """``file:line`` of ``path`` (``file`` when the data has no lines)."""
        line = self.line(path)
        return self.source if line is None else f"{self.source}:{line}"

    def fail(self, path: PathKey, message: str) -> ConfigError:
        """``file:line: field: message`` — the one voice of every config error."""
        return ConfigError(f"{self.where(path)}: {dotted(path) or '<document>'}: {message}")

    def error(
        self, path: PathKey, expected: str, got: Any = None, show_got: bool = True
    ) -> ConfigError:
        """``file:line: field: expected <expected>, got <got>``."""
        return self.fail(path, f"expected {expected}" + (f", got {kind(got)}" if show_got else ""))


def dotted(path: PathKey) -> str:
    """``power_modes[1].name``: list positions count from 1, as users count. A deep path keeps
    its first and last parts (``all.children...g48.children``) so the message stays short."""
    parts = [f"[{p + 1}]" if isinstance(p, int) else f".{p}" for p in path]
    if len(parts) > 8:
        parts = parts[:2] + ["..."] + [p.lstrip(".") for p in parts[-5:-4]] + parts[-4:]
    return "".join(parts).removeprefix(".")


def kind(value: Any) -> str:
    """How a message shows a value: ``a mapping``, ``a list`` or its repr."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----- reading -----------------------------------------------------------------------------------


def read_text(path: str | Path, what: str = "YAML file") -> str:
    """The text of a config file: a regular file of at most MAX_BYTES of UTF-8."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{path}: {what} is not a regular file")
            data = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: {what} is larger than {MAX_BYTES >> 20} MiB")
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise ConfigError(f"{path}: byte 0: {name} text (byte-order mark); save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: byte {err.start}: not UTF-8 text; save it as UTF-8") from None


def read_yaml(path: str | Path, what: str = "YAML file") -> YamlDoc:
    """Read and parse a config file (see the module docstring for the limits)."""
    return parse_yaml(read_text(path, what), str(path))


def parse_yaml(text: str, source: str) -> YamlDoc:
    """Parse ``text`` (labelled ``source`` in messages) into a :class:`YamlDoc`."""
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        offset = len(text[: bad.start()].encode("utf-8", "surrogatepass"))
        char = ord(bad.group())
        hint = " (is the file UTF-16? save it as UTF-8)" if char == 0 else ""
        raise ConfigError(f"{source}: byte {offset}: control character U+{char:04X}{hint}")
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is still UTF-8
    composer = _Composer(text, source)
    try:
        return composer.document()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: invalid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {' '.join(str(err).split())}") from None
    finally:
        composer.loader.dispose()


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return 1 if mark is None else mark.line + 1


class _Composer:
    """Builds plain data from parser events, enforcing the limits as it goes."""

    def __init__(self, text: str, source: str) -> None:
        self.loader = _Loader(text)
        self.doc = YamlDoc(source, None)
        self.anchors: dict[str, tuple[Any, int]] = {}  # anchor -> (value, values it holds)
        self.values = 0
        self.aliases = 0

    def document(self) -> YamlDoc:
        self.loader.get_event()  # stream start
        if self.loader.check_event(yaml.StreamEndEvent):  # an empty file
            self.doc.lines[()] = 1
            return self.doc
        self.loader.get_event()  # document start
        self.doc.data, _ = self.value((), 0)
        self.loader.get_event()  # document end
        if not self.loader.check_event(yaml.StreamEndEvent):
            extra = _line(self.loader.peek_event())
            raise ConfigError(f"{self.doc.source}:{extra}: a second YAML document; expected one")
        return self.doc

    def fail(self, event: yaml.Event, path: PathKey, message: str) -> ConfigError:
        where = f"{self.doc.source}:{_line(event)}"
        return ConfigError(f"{where}: {dotted(path) or '<document>'}: {message}")

    def charge(self, event: yaml.Event, path: PathKey, count: int) -> None:
        self.values += count
        if self.values > MAX_VALUES:
            raise self.fail(
                event, path, f"more than {MAX_VALUES} values (aliases that repeat too much?)"
            )

    def value(self, path: PathKey, depth: int) -> tuple[Any, int]:
        """The value of the next node and how many values it holds (aliases expanded)."""
        event = self.loader.get_event()
        self.doc.lines.setdefault(path, _line(event))
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise self.fail(event, path, f"more than {MAX_ALIASES} aliases")
            if event.anchor not in self.anchors:  # also an alias inside its own anchor
                raise self.fail(event, path, f"alias *{event.anchor} names no earlier anchor")
            data, size = self.anchors[event.anchor]
            self.charge(event, path, size)
            return data, size
        if event.tag is not None:
            raise self.fail(event, path, "YAML tags are not allowed")
        if depth >= MAX_DEPTH:
            raise self.fail(event, path, f"nested more than {MAX_DEPTH} levels deep")
        self.charge(event, path, 1)
        if isinstance(event, yaml.ScalarEvent):
            data, size = self.scalar(event, path), 1
        elif isinstance(event, yaml.SequenceStartEvent):
            data, size = self.sequence(path, depth)
        else:
            data, size = self.mapping(path, depth)
        if event.anchor is not None:
            self.anchors[event.anchor] = (data, size)
        return data, size

    def scalar(self, event: yaml.ScalarEvent, path: PathKey) -> Any:
        if not event.implicit[0]:  # quoted or block text: a string, whatever it looks like
            return event.value
        tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR:
            return event.value
        node = yaml.ScalarNode(tag, event.value)
        try:
            return self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError) as err:
            detail = getattr(err, "problem", None) or " ".join(str(err).split())
            message = f"unreadable value {kind(event.value)} ({detail})"
            raise self.fail(event, path, message) from None

    def sequence(self, path: PathKey, depth: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        size = 1
        while not self.loader.check_event(yaml.SequenceEndEvent):
            item, n = self.value(path + (len(items),), depth + 1)
            items.append(item)
            size += n
        self.loader.get_event()
        return items, size

    def mapping(self, path: PathKey, depth: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        size = 1
        while not self.loader.check_event(yaml.MappingEndEvent):
            event = self.loader.get_event()
            if not isinstance(event, yaml.ScalarEvent) or event.anchor is not None:
                raise self.fail(event, path, "mapping keys must be plain names")
            if event.tag is not None:
                raise self.fail(event, path, "YAML tags are not allowed")
            key = event.value  # as written: `on:` is the key 'on', not True
            if key == "<<" and event.implicit[0]:  # plain, not quoted
                raise self.fail(event, path + (key,), "merge keys are not supported")
            if key in out:
                raise self.fail(event, path + (key,), "given twice")
            self.doc.lines[path + (key,)] = _line(event)
            self.charge(event, path + (key,), 1)
            out[key], n = self.value(path + (key,), depth + 1)
            size += n + 1
        self.loader.get_event()
        return out, size


# ----- validating --------------------------------------------------------------------------------

_MISSING = object()


def lookup(data: Any, path: PathKey) -> Any:
    """The value at ``path`` in ``data``, or a private sentinel when absent."""
    cur = data
    for part in path:
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                return _MISSING
        elif not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def require(
    doc: YamlDoc,
    path: PathKey,
    expected: str,
    ok: Callable[[Any], bool] | None = None,
    default: Any = _MISSING,
) -> Any:
    """The value at ``path`` if ``ok(value)`` holds; a missing optional field gives ``default``.

    Raises ``file:line: a.b: expected <expected>, got <value>`` (or ``... is missing``).
    """
    value = lookup(doc.data, path)
    if value is _MISSING:
        if default is not _MISSING:
            return default
        raise doc.fail(path, f"is missing: expected {expected}")
    if ok is not None and not ok(value):
        raise doc.error(path, expected, value)
    return value


def reject_unknown(doc: YamlDoc, path: PathKey, allowed: Iterable[str]) -> None:
    """Raise for a key of the mapping at ``path`` that is not ``allowed``, suggesting the
    closest allowed one (``default_devise: unknown key (did you mean 'default_device'?)``)."""
    mapping = lookup(doc.data, path)
    if not isinstance(mapping, dict):
        return
    names = sorted(allowed) if isinstance(allowed, (set, frozenset)) else list(allowed)
    for key in mapping:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            tip = f" (did you mean '{close[0]}'?)" if close else ""
            raise doc.fail(path + (key,), f"unknown key{tip}; expected one of: {', '.join(names)}")
