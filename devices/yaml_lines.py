"""YAML loading that remembers where every value came from, for errors that name a line.

PyYAML's composer keeps a ``start_mark`` on every node; we construct the plain Python value
and, beside it, a map from the value's *path* (``("gpu", "sms")``, ``("power_modes", 2, "name")``)
to its 1-based line. A validator reads the plain data and asks :meth:`YamlDoc.where` for the
line of a field — or of its nearest present parent when the field is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from partitioner.errors import ConfigError

PathKey = tuple[str | int, ...]


@dataclass
class YamlDoc:
    """A parsed YAML document plus the line of every mapping key, list item and scalar."""

    source: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def where(self, path: PathKey) -> str:
        """``file:line`` of ``path``, or of its closest ancestor that exists."""
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        line = self.lines.get(p, 1)
        return f"{self.source}:{line}"

    def error(
        self, path: PathKey, expected: str, got: Any = None, show_got: bool = True
    ) -> ConfigError:
        """A ConfigError naming file, line, field and what was expected."""
        name = dotted(path) or "<document>"
        msg = f"{self.where(path)}: field '{name}': expected {expected}"
        if show_got:
            msg += f", got {got!r}"
        return ConfigError(msg)


def dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def load_yaml(path: str | Path, text: str | None = None) -> YamlDoc:
    """Read ``path`` (or ``text`` labelled as ``path``); syntax errors become ConfigError."""
    source = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read YAML file {source}: {err.strerror or err}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}{line}: invalid YAML: {problem}") from None
    if node is None:
        return YamlDoc(source, None, {(): 1})
    doc = YamlDoc(source, None)
    constructor = yaml.SafeLoader(text)  # only its construct_object is used, on our nodes
    try:
        doc.data = _build(node, (), doc.lines, constructor)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{source}{line}: invalid YAML value: {getattr(err, 'problem', err)}"
        ) from None
    finally:
        constructor.dispose()
    return doc


def _build(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], ctor: yaml.SafeLoader) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: mapping keys must be plain scalars"
                )
            lines[path + (str(key),)] = key_node.start_mark.line + 1
            out[str(key)] = _build(value_node, path + (str(key),), lines, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), lines, ctor) for i, item in enumerate(node.value)]
    return ctor.construct_object(node, deep=True)


def walk_keys(data: Any, path: PathKey = ()) -> Iterator[PathKey]:
    """Every mapping-key path in ``data`` (for 'unknown field' checks)."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield path + (k,)
            yield from walk_keys(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from walk_keys(v, path + (i,))


_MISSING = object()


def lookup(data: Any, path: PathKey) -> Any:
    """The value at ``path`` in ``data``, or a private sentinel when absent."""
    cur = data
    for part in path:
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                return _MISSING
            cur = cur[part]
        else:
            if not isinstance(cur, dict) or part not in cur:
                return _MISSING
            cur = cur[part]
    return cur


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def require(
    doc: YamlDoc,
    path: PathKey,
    expected: str,
    ok: Any = None,
    default: Any = _MISSING,
) -> Any:
    """The value at ``path`` if ``ok(value)`` holds; a missing optional field gives ``default``.

    Raises ConfigError ``file:line: field 'a.b': expected <expected>, got <value>`` (or
    ``... expected <expected> (field is missing)``).
    """
    value = lookup(doc.data, path)
    if value is _MISSING:
        if default is not _MISSING:
            return default
        raise ConfigError(
            f"{doc.where(path)}: field '{dotted(path)}' is missing: expected {expected}"
        )
    if ok is not None and not ok(value):
        raise doc.error(path, expected, value)
    return value


def reject_unknown(doc: YamlDoc, path: PathKey, allowed: set[str]) -> None:
    """Raise for a key in the mapping at ``path`` that is not in ``allowed`` (typos)."""
    mapping = lookup(doc.data, path)
    if not isinstance(mapping, dict):
        return
    for key in mapping:
        if key not in allowed:
            raise ConfigError(
                f"{doc.where(path + (key,))}: unknown field '{dotted(path + (key,))}': "
                f"expected one of {', '.join(sorted(allowed))}"
            )
