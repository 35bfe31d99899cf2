"""Refit: new weights into a built plan without re-partitioning, as TensorRT's ``IRefitter``.

A plan stores each segment's graph structure in its header and every constant as a blob keyed
``"<segment>/<tensor>"`` (see ``partitioner.serialize``). Refitting replaces those blobs and
recompiles each DLA loadable whose weights changed, from the segment graph and the plan's stored
INT8 scales — the DLA compiler re-quantises INT8 weights per channel, deterministically, so a
refitted plan equals a fresh build with the same weights.

Weights come by name (:meth:`Refitter.set_named_weights`) or from an ONNX file of the same
structure (:meth:`Refitter.refit_from_onnx`). The file is imported with the same passes as a build
(BatchNormalization folds into Conv, so plan constants are not 1:1 with ONNX initializers) and
its graph must match the plan's, layer for layer; a mismatch is refused with what differs.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from devices.plan import Blob, Plan, read_plan
from devices.plan_header import GraphRecord, PlanHeader, SegmentRecord
from dla_sim.compiler import compile_loadable
from partitioner.errors import TandemError
from partitioner.ir import Graph
from partitioner.profiles import fixed_dims
from partitioner.serialize import graph_to_data
from partitioner.subgraph import extract_subgraph
from targets.build import fix_dims, load_model

_MAX_SHOWN = 12


class RefitError(TandemError):
    """New weights do not fit the plan (unknown name, another shape or dtype, another graph)."""


class Refitter:
    """Updates the weights of a plan (TensorRT's names: ``set_named_weights``,
    ``get_all_weights``, ``get_missing_weights``, ``refit_cuda_engine``).

    Weight names are the plan's constant tensor names — after the import passes, so a Conv
    followed by BatchNormalization has the folded ``<conv>_bn_weight`` / ``<conv>_bn_bias``.
    Array-valued attributes are named ``<layer>/attr/<attribute>``. Unlike TensorRT, weights not
    set keep the plan's values; :meth:`get_missing_weights` lists them for callers that insist on
    a complete set.
    """

    def __init__(self, plan: Plan | str | os.PathLike[str]) -> None:
        self.plan = plan if isinstance(plan, Plan) else read_plan(plan)
        self.where = str(self.plan.path or "the plan")
        #: weight name -> the blob keys holding it (a constant read by two segments is in both)
        self._keys: dict[str, list[str]] = {}
        for rec in self.plan.record.segments:
            for name, key in _segment_arrays(rec).items():
                self._keys.setdefault(name, []).append(key)
        self._pending: dict[str, np.ndarray] = {}

    # ----- TensorRT's interface ---------------------------------------------------------------
    def get_all_weights(self) -> list[str]:
        """Every refittable weight of the plan, sorted."""
        return sorted(self._keys)

    def get_missing_weights(self) -> list[str]:
        """Weights not set since this refitter was made (they keep the plan's values)."""
        return sorted(set(self._keys) - set(self._pending))

    def get_named_weights(self, name: str) -> np.ndarray:
        """The value a refit would use: the one set, else the plan's."""
        if name in self._pending:
            return self._pending[name]
        return self.plan.array(self._key(name))

    def set_named_weights(self, name: str, weights: np.ndarray) -> bool:
        """Set one weight; its shape and dtype must equal the plan's. Returns True."""
        key = self._key(name)
        blob = self.plan.blob(key)
        array = np.asarray(weights)
        if tuple(array.shape) != tuple(blob.shape or ()) or array.dtype.name != blob.dtype:
            raise RefitError(
                f"weight '{name}': the plan has {blob.dtype} {list(blob.shape or ())}, the new "
                f"value is {array.dtype.name} {list(array.shape)}; pass an array of that shape "
                "and dtype (astype) or rebuild the plan for the new structure"
            )
        self._pending[name] = array
        return True

    def refit_from_onnx(self, path: str | os.PathLike[str]) -> bool:
        """Take every weight from an ONNX model of the same structure; True on success.

        Raises :class:`RefitError` naming what differs (layers missing or extra, op, inputs,
        attributes, constant shapes or dtypes) when the model is not the plan's graph.
        """
        graph = self._import_like_build(path)
        problems = _compare(self.plan.record, graph, Path(path).name)
        if problems:
            raise RefitError(
                f"{path}: not the structure of {self.where}: {_summary(problems)}; refit needs "
                "the same layers, ops and weight shapes — rebuild with `tandem build`"
            )
        for rec in self.plan.record.segments:
            sub = extract_subgraph(graph, list(rec.layers), rec.name)
            _, arrays = graph_to_data(sub, array_key=_blob_key(rec.name))
            for name, key in _segment_arrays(rec).items():
                self.set_named_weights(name, arrays[key])
        return True

    def refit_cuda_engine(self) -> Plan:
        """The refitted plan (a new :class:`Plan`; write it with ``write_plan``).

        TensorRT refits an engine in place and returns a bool; a plan file is immutable and
        memory-mapped, so the result is a new plan. DLA loadables whose weights changed are
        recompiled with the plan's calibration scales.
        """
        blobs = dict(self.plan.blobs)
        changed_keys: set[str] = set()
        changed = 0
        for name, array in self._pending.items():
            old = self.plan.array(self._keys[name][0])
            if not np.array_equal(old, array, equal_nan=True) or old.dtype != array.dtype:
                changed += 1
            for key in self._keys[name]:
                blobs[key] = Blob.from_array(array, self.plan.blob(key).kind)
                changed_keys.add(key)
        refitted = Plan(copy.deepcopy(self.plan.header), blobs)
        recompiled = []
        for rec in self.plan.record.segments:
            if rec.loadable is None:
                continue
            if set(_segment_arrays(rec).values()) & changed_keys:
                blobs[rec.loadable] = self._recompile(refitted, rec)
                recompiled.append(rec.name)
        refitted.header["metadata"] = {
            **self.plan.record.metadata,
            "refit": {
                "weights_set": len(self._pending),
                "weights_changed": changed,
                "recompiled": recompiled,
            },  # fmt: skip
        }
        refitted.edited()
        return refitted

    # ----- helpers ------------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        keys = self._keys.get(name)
        if not keys:
            raise RefitError(
                f"{self.where} has no weight named '{name}'; Refitter.get_all_weights() lists "
                "them (names after the import passes: BatchNormalization folds into Conv)"
            )
        return keys[0]

    def _recompile(self, refitted: Plan, rec: SegmentRecord) -> Blob:
        """DLA segment ``rec``'s loadable compiled from ``refitted``'s (new) weights."""
        assert rec.loadable is not None
        head = self.plan.record
        sub = refitted.segment_graph(rec)
        scales = head.calibration
        precision = rec.precision or "fp16"
        seg_scales = None
        if precision == "int8" and scales:
            seg_scales = {t: scales[t] for t in sub.tensors if t in scales}
        if head.dla_version is None:
            raise RefitError(f"{self.where} has DLA segments but no dla_version; rebuild it")
        loadable = compile_loadable(sub, precision, head.dla_version, seg_scales, rec.name)
        return Blob(loadable.to_bytes(), refitted.blob(rec.loadable).kind)

    def _import_like_build(self, path: str | os.PathLike[str]) -> Graph:
        """Import ``path`` as the build imported the plan's model: the same passes, the same
        symbolic dims fixed (``--dim`` at import, profile-pinned dims afterwards)."""
        graph = load_model(path)
        plan_shapes = {b.name: b.shape for b in self.plan.record.inputs}
        dims: dict[str, int] = {}
        for t in graph.inputs:
            for d, p in zip(t.shape or (), plan_shapes.get(t.name) or ()):
                if isinstance(d, str) and isinstance(p, int):
                    dims[d] = p
        if not dims:
            return graph
        profiles = self.plan.record.optimization_profiles()
        pinned = fixed_dims(profiles, graph.inputs) if profiles else {}
        at_import = {k: v for k, v in dims.items() if k not in pinned}
        if at_import:
            graph = load_model(path, at_import)
        later = {k: v for k, v in dims.items() if k in pinned}
        return fix_dims(graph, later) if later else graph


def refit_plan(plan: Plan | str | os.PathLike[str], onnx_path: str | os.PathLike[str]) -> Plan:
    """``plan`` with every weight taken from ``onnx_path`` (a model of the same structure)."""
    refitter = Refitter(plan)
    refitter.refit_from_onnx(onnx_path)
    return refitter.refit_cuda_engine()


def _blob_key(segment: str) -> Callable[[str], str]:
    """How ``build_plan`` keys a segment's arrays: ``"<segment>/<tensor>"``."""
    return lambda name: f"{segment}/{name}"


def _segment_arrays(rec: SegmentRecord) -> dict[str, str]:
    """Weight name -> blob key for one stored segment graph."""
    out = {t.name: t.array for t in rec.graph.tensors if t.array is not None}
    for node in rec.graph.nodes:
        for attr, value in node.attrs.items():
            if value.array is not None:
                out[f"{node.name}/attr/{attr}"] = value.array
    return out


def _summary(problems: list[str]) -> str:
    """Layer, op and weight differences in full (up to a limit); activation shapes, which
    follow from those or from the input shape, as a count and the first few."""
    unique = list(dict.fromkeys(problems))
    main = [p for p in unique if not p.startswith("tensor ")]
    shapes = [p for p in unique if p.startswith("tensor ")]
    parts = main[:_MAX_SHOWN]
    if len(main) > _MAX_SHOWN:
        parts.append(f"and {len(main) - _MAX_SHOWN} more")
    if shapes:
        first = "; ".join(shapes[:3])
        parts.append(f"{len(shapes)} activation shape(s) differ, e.g. {first}")
    return "; ".join(parts)


def _compare(header: PlanHeader, graph: Graph, label: str) -> list[str]:
    """What differs between the plan's segment graphs and ``graph``, one phrase each."""
    problems: list[str] = []
    plan_inputs = header.input_names
    plan_outputs = header.output_names
    if [t.name for t in graph.inputs] != plan_inputs:
        problems.append(f"inputs {[t.name for t in graph.inputs]} (plan: {plan_inputs})")
    if [t.name for t in graph.outputs] != plan_outputs:
        problems.append(f"outputs {[t.name for t in graph.outputs]} (plan: {plan_outputs})")
    plan_layers = [layer for rec in header.segments for layer in rec.layers]
    have = {n.name for n in graph.nodes}
    missing = [name for name in plan_layers if name not in have]
    extra = sorted(have - set(plan_layers))
    if missing:
        problems.append(f"layers missing from {label}: {', '.join(missing[:_MAX_SHOWN])}")
    if extra:
        problems.append(f"layers {label} adds: {', '.join(extra[:_MAX_SHOWN])}")
    if missing:
        return problems  # segment graphs cannot be cut from the new model
    for rec in header.segments:
        sub = extract_subgraph(graph, list(rec.layers), rec.name)
        new, _ = graph_to_data(sub, array_key=_blob_key(rec.name))
        problems += _compare_structures(rec.graph, new)
    return problems


_ABSENT = object()  # an attribute a side lacks (or holds as an array): not a value


def _shown(value: Any) -> Any:
    return "absent" if value is _ABSENT else value


def _compare_structures(old: GraphRecord, new: Mapping[str, Any]) -> list[str]:
    """The plan's stored segment graph against the new model's (``graph_to_data``'s form)."""
    out: list[str] = []
    new_nodes = {n["name"]: n for n in new["nodes"]}
    for n in old.nodes:
        m = new_nodes.get(n.name)
        if m is None:
            continue  # reported as a missing layer
        where = f"layer '{n.name}'"
        if (n.op, n.domain) != (m["op"], m.get("domain", "")):
            out.append(f"{where}: op {m['op']} (plan: {n.op})")
            continue
        if n.inputs != m["inputs"]:
            out.append(f"{where}: inputs {m['inputs']} (plan: {n.inputs})")
        if n.outputs != m["outputs"]:
            out.append(f"{where}: outputs {m['outputs']} (plan: {n.outputs})")
        for attr in sorted(set(n.attrs) | set(m["attrs"])):
            a, b = n.attrs.get(attr), m["attrs"].get(attr)
            was = a.value if a is not None and a.array is None else _ABSENT
            shown = b["value"] if b is not None and "value" in b else _ABSENT
            if (was is not _ABSENT or shown is not _ABSENT) and was != shown:
                out.append(f"{where}: attribute {attr} = {_shown(shown)} (plan: {_shown(was)})")
    old_tensors = {t.name: t for t in old.tensors}
    new_tensors = {t["name"]: t for t in new["tensors"]}
    for name, t in old_tensors.items():
        u = new_tensors.get(name)
        weight = t.array is not None
        if u is None:
            if weight:
                out.append(f"weight '{name}' is missing")
            continue
        if weight != ("array" in u):
            kind = "a weight" if "array" in u else "computed"
            out.append(f"tensor '{name}' is {kind} in the new model")
        elif (t.shape, t.dtype) != (u["shape"], u["dtype"]):
            out.append(
                f"{'weight' if weight else 'tensor'} '{name}': {u['dtype']} {u['shape']} "
                f"(plan: {t.dtype} {t.shape})"
            )
    for name, u in new_tensors.items():
        if name not in old_tensors and "array" in u:
            out.append(f"weight '{name}' is new")
    return out
