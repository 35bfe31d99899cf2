"""Plugins: custom ops a user registers with a numpy reference, a shape rule and a support
declaration per device, in the manner of TensorRT's plugin registry.

A plugin is keyed like :func:`partitioner.shape_inference.op_key`: ``"domain::Op"`` (or ``"Op"``
for the default domain). Once registered in :data:`PLUGINS`, the ONNX importer accepts the op,
shape inference uses its rule, the CPU reference runs its numpy function, the device support
tables consult its declaration, a plan records which plugins (and versions) its segments need,
and the runtime refuses a plan whose plugins are not registered.

Plugins come from Python modules the user names (``--plugin MODULE`` or ``TANDEM_PLUGINS``):
importing one runs the user's code on purpose. A plan never does — it only names the plugins
it needs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from partitioner.errors import TandemError
from partitioner.ir import Dim, Graph, Node, Shape

#: environment variable naming plugin modules to load (comma- or os.pathsep-separated)
ENV_VAR = "TANDEM_PLUGINS"
_DEFAULT_DOMAINS = ("", "ai.onnx")
#: what ``support={"gpu": True}`` means: the precisions a GPU plugin kernel usually offers
_DEFAULT_PRECISIONS = {"gpu": ("fp32", "fp16"), "cpu": ("fp32",)}
_DEVICES = ("gpu", "dla", "cpu")
_PRECISIONS = ("fp32", "fp16", "int8")

Result = tuple[Shape | None, str | None]


class PluginError(TandemError):
    """A plugin is malformed, missing, or at another version than a plan needs."""


def plugin_key(op_type: str, domain: str = "") -> str:
    """``Op`` for the default ONNX domain, ``domain::Op`` otherwise (as shape inference keys)."""
    return op_type if domain in _DEFAULT_DOMAINS else f"{domain}::{op_type}"


@dataclass(frozen=True)
class Plugin:
    """One registered custom op.

    ``reference(*inputs, **attrs)`` returns an array or a sequence of arrays (one per output).
    ``infer_shape(*input_shapes, **attrs)`` returns a shape or a list of shapes (dims are int,
    symbolic str, or None); without it every output takes input 0's shape. ``infer_dtype``
    likewise maps input dtypes (numpy names) to output dtypes; without it, input 0's dtype.
    ``support`` maps a device kind (``gpu``, ``dla``, ``cpu``) to the precisions it runs.
    """

    op: str
    domain: str
    version: str
    reference: Callable[..., Any]
    infer_shape: Callable[..., Any] | None = None
    infer_dtype: Callable[..., Any] | None = None
    cuda_source: str | None = None
    support: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return plugin_key(self.op, self.domain)

    @property
    def label(self) -> str:
        return f"plugin {self.key} v{self.version}"

    # ----- what the layers below call -----------------------------------------------------
    def shape_rule(self, node: Node) -> list[Result]:
        """Shape inference's rule: ``(shape, dtype)`` per output of ``node``."""
        shapes = [t.shape if t is not None else None for t in node.inputs]
        dtypes = [t.dtype if t is not None else None for t in node.inputs]
        n = len(node.outputs)
        if self.infer_shape is None:
            out_shapes: list[Shape | None] = [shapes[0] if shapes else None] * n
        elif any(s is None for s in shapes):
            out_shapes = [None] * n  # not known yet: the rule runs again once inputs have shapes
        else:
            out_shapes = _as_shapes(self.infer_shape(*shapes, **node.attrs), n, self.label)
        if self.infer_dtype is None:
            out_dtypes: list[str | None] = [dtypes[0] if dtypes else None] * n
        else:
            got = self.infer_dtype(*dtypes, **node.attrs)
            got_list = [got] * n if isinstance(got, str) else list(got)
            out_dtypes = [str(np.dtype(d)) if d is not None else None for d in got_list]
        return list(zip(out_shapes, out_dtypes))

    def evaluate(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        """Run the numpy reference; omitted optional inputs are passed as None."""
        result = self.reference(*inputs, **node.attrs)
        if isinstance(result, np.ndarray | np.generic):
            return [np.asarray(result)]
        return [np.asarray(r) for r in result]

    def precisions(self, device_kind: str) -> tuple[str, ...]:
        return tuple(self.support.get(device_kind, ()))

    def describe(self) -> dict[str, Any]:
        """What a plan records about the plugin (no code, only names and versions)."""
        return {"key": self.key, "op": self.op, "domain": self.domain, "version": self.version}


def _as_shapes(value: Any, n: int, label: str) -> list[Shape | None]:
    """A shape or a list of shapes -> one shape per output."""

    def is_dim(d: Any) -> bool:
        return d is None or isinstance(d, int | str | np.integer)

    if isinstance(value, tuple | list) and all(is_dim(d) for d in value):
        shapes = [value]
    elif isinstance(value, tuple | list):
        shapes = list(value)
    else:
        raise PluginError(f"{label}: infer_shape returned {value!r}; expected a shape (tuple)")
    if len(shapes) != n:
        raise PluginError(
            f"{label}: infer_shape returned {len(shapes)} shape(s) for a layer with {n} output(s)"
        )
    out: list[Shape | None] = []
    for s in shapes:
        if s is None:
            out.append(None)
            continue
        dims: list[Dim] = [int(d) if isinstance(d, np.integer) else d for d in s]
        out.append(tuple(dims))
    return out


def _support(
    decl: Mapping[str, Any] | None, cuda_source: str | None, key: str
) -> dict[str, tuple[str, ...]]:
    """Normalise ``support={"gpu": True, "dla": False}`` to ``{device: (precisions...)}``."""
    decl = dict(decl) if decl is not None else {"cpu": True}
    unknown = sorted(set(decl) - set(_DEVICES))
    if unknown:
        raise PluginError(
            f"plugin {key}: support names unknown device(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(_DEVICES)}"
        )
    decl.setdefault("cpu", True)  # the numpy reference always runs on the host
    out: dict[str, tuple[str, ...]] = {}
    for device, value in decl.items():
        if value is True:
            precisions = _DEFAULT_PRECISIONS.get(device, ("fp16",))
        elif not value:
            precisions = ()
        elif isinstance(value, str):
            precisions = (value,)
        else:
            precisions = tuple(value)
        bad = [p for p in precisions if p not in _PRECISIONS]
        if bad:
            raise PluginError(
                f"plugin {key}: support[{device!r}] lists {', '.join(map(str, bad))}; "
                f"expected precisions from {', '.join(_PRECISIONS)}"
            )
        out[device] = precisions
    if out.get("dla"):
        # TensorRT runs plugin layers on the GPU only; the DLA compiler has no custom layers.
        raise PluginError(
            f"plugin {key}: the DLA runs no plugin layers (TensorRT places plugins on the GPU); "
            "declare support={'gpu': ..., 'dla': False}"
        )
    if out.get("gpu") and not cuda_source:
        raise PluginError(
            f"plugin {key}: GPU support needs cuda_source (the kernel the GPU would run); "
            "without it the layer runs on the CPU reference"
        )
    if out["cpu"] not in ((), ("fp32",)):
        raise PluginError(f"plugin {key}: the CPU reference runs fp32 only")
    return out


class PluginRegistry:
    """Plugins by key. TensorRT's ``IPluginRegistry`` with Python callables for the parts."""

    def __init__(self) -> None:
        self._plugins: dict[str, Plugin] = {}

    def register(
        self,
        op_type: str,
        domain: str = "",
        version: int | str = 1,
        *,
        reference: Callable[..., Any],
        infer_shape: Callable[..., Any] | None = None,
        infer_dtype: Callable[..., Any] | None = None,
        cuda_source: str | None = None,
        support: Mapping[str, Any] | None = None,
    ) -> Plugin:
        """Register (or replace) the plugin for ``domain::op_type``; returns it."""
        if not op_type or not isinstance(op_type, str):
            raise PluginError(f"a plugin needs an op type name, got {op_type!r}")
        if not callable(reference):
            raise PluginError(f"plugin {plugin_key(op_type, domain)}: reference must be callable")
        key = plugin_key(op_type, domain)
        plugin = Plugin(
            op_type,
            "" if domain in _DEFAULT_DOMAINS else domain,
            str(version),
            reference,
            infer_shape,
            infer_dtype,
            cuda_source,
            _support(support, cuda_source, key),
        )
        self._plugins[key] = plugin
        return plugin

    def deregister(self, op_type: str, domain: str = "") -> bool:
        """Remove a plugin; True when one was registered."""
        return self._plugins.pop(plugin_key(op_type, domain), None) is not None

    def get(self, op_type: str, domain: str = "") -> Plugin | None:
        return self._plugins.get(plugin_key(op_type, domain))

    def find(self, node: Node) -> Plugin | None:
        """The plugin implementing ``node``, if any."""
        if not self._plugins:
            return None
        return self._plugins.get(plugin_key(node.op, node.domain))

    def shape_rules(self) -> dict[str, Callable[[Node], list[Result]]]:
        """Shape rules keyed like ``shape_inference.op_key`` (what ``import_onnx`` takes)."""
        return {key: p.shape_rule for key, p in self._plugins.items()}

    def __contains__(self, key: object) -> bool:
        return key in self._plugins

    def __iter__(self) -> Iterator[Plugin]:
        return iter(list(self._plugins.values()))

    def __len__(self) -> int:
        return len(self._plugins)

    # ----- plans --------------------------------------------------------------------------
    def requirements(
        self, graph: Graph, segments: Iterable[tuple[str, Iterable[str]]]
    ) -> list[dict[str, Any]]:
        """What a plan records: each plugin ``graph`` uses, its version, and the segments and
        layers using it. ``segments`` is ``(segment name, its layer names)`` pairs."""
        if not self._plugins:
            return []
        by_name = {n.name: n for n in graph.nodes}
        found: dict[str, dict[str, Any]] = {}
        for seg_name, layers in segments:
            for layer in layers:
                node = by_name.get(layer)
                plugin = self.find(node) if node is not None else None
                if plugin is None:
                    continue
                entry = found.setdefault(
                    plugin.key, {**plugin.describe(), "segments": [], "layers": []}
                )
                if seg_name not in entry["segments"]:
                    entry["segments"].append(seg_name)
                entry["layers"].append(layer)
        return [found[k] for k in sorted(found)]

    def check_available(self, required: Any, where: str = "the plan") -> None:
        """Refuse to go on when a plugin a plan needs is missing or at another version."""
        if not required:
            return
        if not isinstance(required, list) or not all(
            isinstance(r, Mapping) and "key" in r and "version" in r for r in required
        ):
            raise PluginError(f"{where}: the header's 'plugins' entry is malformed; rebuild it")
        problems = []
        for r in required:
            have = self._plugins.get(str(r["key"]))
            segs = ", ".join(r.get("segments", [])) or "?"
            if have is None:
                problems.append(f"{r['key']} version {r['version']} (used by {segs}) is not "
                                "registered")  # fmt: skip
            elif have.version != str(r["version"]):
                problems.append(f"{r['key']} version {r['version']} is needed, version "
                                f"{have.version} is registered")  # fmt: skip
        if problems:
            raise PluginError(
                f"{where} needs plugins: {'; '.join(problems)}; load the module that registers "
                f"them with --plugin MODULE or {ENV_VAR}=MODULE (see docs/plugins.md)"
            )


#: the process-wide registry the importer, the CPU reference, the support tables and the
#: runtime consult
PLUGINS = PluginRegistry()


def load_plugin_modules(names: Iterable[str] | None = None, *, env: bool = True) -> list[str]:
    """Import plugin modules: dotted module names or ``.py`` paths, plus those named in
    ``TANDEM_PLUGINS`` when ``env``. Each module registers its plugins on import (into
    :data:`PLUGINS`). This runs the user's code, deliberately; returns the modules loaded."""
    wanted = [n for n in (names or []) if n]
    if env:
        raw = os.environ.get(ENV_VAR, "")
        for sep in (",", os.pathsep):
            raw = raw.replace(sep, "\n")
        wanted += [n.strip() for n in raw.splitlines() if n.strip()]
    loaded = []
    for name in wanted:
        _import_plugin_module(name)
        loaded.append(name)
    return loaded


def _import_plugin_module(name: str) -> None:
    try:
        if name.endswith(".py") or os.sep in name:
            path = Path(name)
            if not path.is_file():
                raise PluginError(f"plugin module {name}: no such file")
            # a file is executed on every load, so its plugins are registered again
            mod_name = f"tandem_plugin_{path.stem}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                raise PluginError(f"plugin module {name}: cannot be loaded as Python")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[mod_name]
                raise
        else:
            importlib.import_module(name)
    except TandemError:
        raise
    except ModuleNotFoundError as err:
        raise PluginError(
            f"plugin module {name!r} cannot be imported ({err}); pass a module on PYTHONPATH "
            "or a path to a .py file"
        ) from None
    except Exception as err:  # the user's module failed while registering: name it
        raise PluginError(
            f"plugin module {name!r} failed while loading: {type(err).__name__}: {err}"
        ) from err
