"""The GPU lowering's op table: one handler per ONNX op, each with the check that says, without
lowering, whether it will accept a node.

A handler is registered with ``@register("Op", ..., supports=check, data=(0,))``: ``lower(lw,
node)`` emits the node's kernels into a :class:`~gpu_kernels.lowering.values.Lowering`;
``check(node, arch, precision) -> Verdict`` refuses, with the reason, every node the handler
would refuse. ``data`` lists the inputs the handler reads as tensors (``None``: all of them);
those must be float and of static shape, which :func:`supports` checks for every op alike.

:func:`supports` is what the GPU capability asks; the lowering asks the same function before it
calls a handler and raises its reason, so the two cannot disagree.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.program import MAXR
from partitioner.capability import Verdict
from partitioner.ir import Constant, Node, Tensor

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering

LowerFn = Callable[["Lowering", Node], None]
CheckFn = Callable[[Node, int, str], Verdict]
PRECISIONS = ("fp32", "fp16", "int8")
# the modules whose handlers fill the table (imported on first use: they import this one)
_HANDLER_MODULES = ("conv", "gemm", "elementwise", "movement", "norms", "reduce", "einsum",
                    "int8", "recurrent")


@dataclass(frozen=True)
class Handler:
    lower: LowerFn
    check: CheckFn
    data: tuple[int, ...] | None  # inputs read as tensors; None: every input


_HANDLERS: dict[str, Handler] = {}
_LOADED = False


def register(*ops: str, supports: CheckFn, data: tuple[int, ...] | None = (0,)
             ) -> Callable[[LowerFn], LowerFn]:
    """Decorator: ``fn`` lowers each of ``ops``; ``supports`` answers for them."""

    def wrap(fn: LowerFn) -> LowerFn:
        for op in ops:
            if op in _HANDLERS:
                raise RuntimeError(f"op {op} is registered twice in the GPU lowering")
            _HANDLERS[op] = Handler(fn, supports, data)
        return fn

    return wrap


def _load_all() -> None:
    global _LOADED
    if not _LOADED:
        for name in _HANDLER_MODULES:
            importlib.import_module(f"gpu_kernels.lowering.{name}")
        _LOADED = True


def lowered_ops() -> frozenset[str]:
    """Every ONNX op type the GPU lowering has a handler for."""
    _load_all()
    return frozenset(_HANDLERS)


def handler_for(node: Node) -> Handler | None:
    _load_all()
    return _HANDLERS.get(node.op) if node.domain in ("", "ai.onnx") else None


def no_kernel(node: Node) -> str:
    return (f"layer '{node.name}': op {node.op} has no GPU kernel in Tandem; place it on "
            "another device (policy rule) or run it on the CPU")


def unknown_precision(precision: str) -> str:
    return f"GPU precision '{precision}' is not supported (use fp32, fp16 or int8)"


def supports(node: Node, arch: int, precision: str) -> Verdict:
    """Whether the GPU lowering accepts ``node`` at ``precision`` on ``sm_<arch>``, and if not,
    why. What only the whole segment decides stays the lowering's: INT8 needs calibration
    scales; a DequantizeLinear reads the INT8 output of a QuantizeLinear in the same segment; a
    QuantizeLinear's output or a LayerNormalization's Mean / InvStdDev does not leave it."""
    handler = handler_for(node)
    if handler is None:
        return Verdict.no(no_kernel(node))
    if precision not in PRECISIONS:
        return Verdict.no(unknown_precision(precision))
    data = node.inputs if handler.data is None else [node.input(i) for i in handler.data]
    for t in data:
        verdict = tensor_ok(t, is_output=False)
        if not verdict:
            return verdict
    # the op's own refusals before the outputs': an output's shape is often unknown because of
    # an input the op refuses (a Slice's run-time bounds), and the op's reason says more
    verdict = handler.check(node, arch, precision)
    for t in node.outputs:
        verdict = verdict and tensor_ok(t, is_output=True)
    return verdict


def element_dtype(t: Tensor) -> np.dtype:
    """``t``'s element type: a constant's values', else the declared one (float32 if none)."""
    return t.values.dtype if isinstance(t, Constant) else np.dtype(t.dtype or "float32")


def tensor_ok(t: Tensor | None, is_output: bool) -> Verdict:
    if t is None:
        return Verdict.yes() if is_output else Verdict.no("a required input is missing")
    if not t.is_static:
        return Verdict.no(f"tensor '{t.name}' has a dynamic shape {t.shape}; fix its dims to "
                          "run it on the GPU")
    shape = t.static_shape()
    if len(shape) > MAXR:
        return Verdict.no(f"tensor '{t.name}' has rank {len(shape)}; the GPU kernels take at "
                          f"most {MAXR} axes")
    if is_output:
        if int(np.prod(shape, dtype=np.int64)) >= 2**31:  # the kernels index with 32-bit ints
            return Verdict.no(f"tensor '{t.name}' of shape {shape} has more than 2^31 "
                              "elements; split the batch to run it on the GPU")
        return Verdict.yes()
    dtype = element_dtype(t)
    if dtype.kind != "f":
        kind = "constant input" if isinstance(t, Constant) else "input"
        return Verdict.no(f"non-float {kind} '{t.name}' ({dtype}) is not supported on the GPU")
    return Verdict.yes()


def bool_ok(t: Tensor | None) -> Verdict:
    """A condition / logic input: bool (0 / 1 in the compute precision inside a segment) or
    float, of static shape."""
    if t is not None and t.is_static:
        if element_dtype(t).kind == "b":
            return tensor_ok(Tensor(t.name, list(t.static_shape()), "float32"), is_output=False)
    return tensor_ok(t, is_output=False)


def constant(node: Node, i: int) -> np.ndarray | None:
    """Input ``i`` when it is a constant (an absent optional input is None too)."""
    return node.constant_input(i)
