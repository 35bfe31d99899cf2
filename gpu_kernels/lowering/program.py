"""What a lowering produces: the program types (buffers, values, launches), the memory plan, and
the summaries and launch arguments read from a program.

Layouts. Four-dimensional activations live in NHWC (tensor cores read channels contiguously);
everything else is "plain" (row-major in ONNX's axis order). A value's layout and dtype change
only through explicit copy kernels that :meth:`Lowering.ensure` inserts where a consumer needs
another form. Boundary tensors are plain FP32 (or the model dtype), i.e. NCHW as ONNX has them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpu_kernels.tactics import ConvProblem, ConvTactic
from partitioner.errors import InternalError, UnsupportedOpError
from partitioner.ir import Graph

ACT = {
    "none": 0, "relu": 1, "clip": 2, "leaky": 3, "sigmoid": 4, "silu": 5, "hardswish": 6,
    "hardsigmoid": 7, "gelu": 8, "tanh": 9, "erf": 10, "exp": 11, "sqrt": 12, "recip": 13,
    "neg": 14, "abs": 15, "elu": 16, "softplus": 17, "mish": 18, "log": 19,
    "gelu_tanh": 20, "floor": 21, "ceil": 22, "round": 23, "sign": 24, "selu": 25, "celu": 26,
    "softsign": 27, "thresholded_relu": 28, "sin": 29, "cos": 30,
}
UNARY_OPS = {
    "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "LeakyRelu": "leaky",
    "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish", "Erf": "erf", "Exp": "exp",
    "Sqrt": "sqrt", "Reciprocal": "recip", "Neg": "neg", "Abs": "abs", "Elu": "elu",
    "Softplus": "softplus", "Mish": "mish", "Log": "log", "Gelu": "gelu", "Clip": "clip",
    "Floor": "floor", "Ceil": "ceil", "Round": "round", "Sign": "sign", "Selu": "selu",
    "Celu": "celu", "Softsign": "softsign", "ThresholdedRelu": "thresholded_relu",
    "Sin": "sin", "Cos": "cos",
}
BINARY_OPS = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Pow": 4, "Max": 5, "Min": 6, "Sum": 0,
              "Mod": 7, "Equal": 8, "Less": 9, "Greater": 10, "LessOrEqual": 11,
              "GreaterOrEqual": 12, "And": 13, "Or": 14}
# comparisons and logic give 0 / 1 in the compute precision: a bool tensor inside a segment
COMPARE_OPS = ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or")
# instruction codes of the fused kernel (as elementwise.cu): a binary op b on two registers is
# b, on a register and an immediate IMM_RIGHT + b, on an immediate and a register IMM_LEFT + b;
# SELECT picks between two registers by a third; an activation is UNARY + its ACT code
IMM_RIGHT, IMM_LEFT, SELECT, UNARY = 16, 32, 48, 64
ALIAS_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
MAXR = 6
DTYPE_BYTES = {"f16": 2, "f32": 4, "i8": 1, "i32": 4, "i64": 8}
NP_DTYPE = {"f16": np.float16, "f32": np.float32, "i8": np.int8, "i32": np.int32,
            "i64": np.int64}
# integer graph inputs a segment takes: only as a Gather's indices (embedding lookups)
INDEX_DTYPES = {np.dtype(np.int64): "i64", np.dtype(np.int32): "i32"}


class GpuLoweringError(UnsupportedOpError):
    """A layer the GPU backend cannot run; the message names the layer and why."""


# ----- buffers, values, launches -------------------------------------------------------------
@dataclass(eq=False)
class VBuf:
    """A virtual activation buffer; ``offset`` in the arena is set by :func:`plan_memory`."""

    nbytes: int
    first: int
    last: int
    kind: str = "arena"  # "arena" | "input" | "output"
    name: str = ""
    offset: int = -1


@dataclass
class Value:
    """A tensor as it lives on the GPU."""

    buf: VBuf
    shape: tuple[int, ...]  # logical (ONNX) shape
    layout: str  # "nhwc" (4-D only) or "plain"
    dtype: str  # "f16" | "f32" | "i8"
    offset: int = 0  # elements from the buffer start
    cs: int = 0  # NHWC: elements between pixels (== C unless a channel slice)
    custom: tuple[int, ...] | None = None  # layout "strided": a view (transpose, slice)
    scale: float = 0.0  # "i8": real value = integer x scale

    def strides(self) -> list[int]:
        """Element strides per *logical* axis."""
        if self.custom is not None:
            return list(self.custom)
        if self.layout == "nhwc":
            _, c, h, w = self.shape
            cs = self.cs or c
            return [h * w * cs, 1, w * cs, cs]
        out, acc = [], 1
        for d in reversed(self.shape):
            out.append(acc)
            acc *= d
        return out[::-1]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def reshaped(v: Value, shape: tuple[int, ...]) -> Value | None:
    """``v`` seen in another ``shape`` over the same elements in row-major order, with no copy,
    when its strides allow it (numpy's rule: each run of old dims that the new dims regroup is
    contiguous within itself); else None. E.g. a (N, 3, H, W, 85) slice of a detection
    Concat's (N, B, 85) buffer read back as (N, 3*H*W, 85)."""
    if v.size == 0 or int(np.prod(shape, dtype=np.int64)) != v.size:
        return None
    old = [(d, st) for d, st in zip(v.shape, v.strides()) if d != 1]
    out = [0] * len(shape)
    i = j = 0
    while j < len(shape):
        if shape[j] == 1:
            j += 1
            continue
        i0, j0 = i, j
        have, want = old[i][0], shape[j]
        i, j = i + 1, j + 1
        while have != want:  # equal products: the dims of one regrouped run
            if have < want:
                have, i = have * old[i][0], i + 1
            else:
                want, j = want * shape[j], j + 1
        if any(old[k][1] != old[k + 1][1] * old[k + 1][0] for k in range(i0, i - 1)):
            return None
        step = old[i - 1][1]
        for k in range(j - 1, j0 - 1, -1):
            out[k] = step if shape[k] != 1 else 0
            step *= shape[k]
    return Value(v.buf, tuple(shape), "strided", v.dtype, v.offset, v.cs, tuple(out),
                 scale=v.scale)


@dataclass(eq=False)
class Leaf:
    """An input of a deferred element-wise expression: a value viewed over the expression's
    shape (layout "strided", stride 0 on broadcast axes)."""

    value: Value


@dataclass(eq=False)
class Op:
    """One instruction of a deferred expression (codes as ``fused`` in elementwise.cu)."""

    code: int
    args: tuple[Leaf | Op, ...]
    imm: tuple[float, float] = (0.0, 0.0)


@dataclass
class Lazy:
    """An element-wise result with no kernel yet. Element-wise layers and views (transpose,
    slice, split) on a tensor with one reader extend it; whoever needs it in memory emits the
    whole chain as one ``fused`` kernel, straight into a Concat's slice where there is one."""

    shape: tuple[int, ...]
    root: Leaf | Op
    layout: str  # what materialising writes ("nhwc" when the chain runs over NHWC data)
    dtype: str


@dataclass
class Ref:
    """A pointer argument: a buffer plus a byte offset, or a weight-arena offset."""

    buf: VBuf | None
    byte_offset: int
    weight: bool = False


@dataclass
class Launch:
    layer: str
    kernel: str  # extern "C" name ("conv_mma_f16" resolved per tactic)
    grid: tuple[int, int, int]
    block: int
    ptrs: list[Ref | None]
    ints: list[int] = field(default_factory=list)
    floats: list[float] = field(default_factory=list)
    smem: int = 0
    tactic: ConvTactic | None = None
    problem: ConvProblem | None = None


@dataclass
class GpuProgram:
    """Everything needed to run a graph on the GPU, before addresses exist."""

    launches: list[Launch]
    buffers: list[VBuf]
    weights: list[tuple[int, np.ndarray]]  # (byte offset in the weight arena, bytes)
    weight_bytes: int
    inputs: dict[str, tuple[VBuf, tuple[int, ...], np.dtype]]
    outputs: dict[str, tuple[VBuf, tuple[int, ...], np.dtype]]
    arena_bytes: int = 0
    naive_bytes: int = 0  # what a no-reuse allocation would take

    @property
    def kernel_count(self) -> int:
        return len(self.launches)


TacticChooser = Callable[[ConvProblem], ConvTactic]


def grid1d(n: int, block: int = 256) -> tuple[int, int, int]:
    return (max(1, min((n + block - 1) // block, 65535 * 8)), 1, 1)


# as elementwise.cu (FUSED_V: elements a thread; FUSED_PIECES: inputs of a Concat in one)
FUSED_IN, FUSED_OPS, FUSED_V, FUSED_PIECES = 6, 24, 4, 8


# ----- memory planning ---------------------------------------------------------------------
def plan_memory(buffers: list[VBuf], align: int = 256) -> tuple[int, int]:
    """Place arena buffers at offsets so that buffers alive at the same time never overlap.

    Greedy by size (largest first), each at the lowest offset free over its lifetime -- the
    classic offset-assignment heuristic. Returns (arena bytes, bytes without any reuse).
    """
    arena = [b for b in buffers if b.kind == "arena" and b.nbytes > 0]
    placed: list[VBuf] = []
    top = 0
    for b in sorted(arena, key=lambda b: (-b.nbytes, b.first)):
        size = (b.nbytes + align - 1) // align * align
        busy = sorted((p.offset, p.offset + (p.nbytes + align - 1) // align * align)
                      for p in placed if not (p.last < b.first or b.last < p.first))
        off = 0
        for lo, hi in busy:
            if off + size <= lo:
                break
            off = max(off, hi)
        b.offset = off
        placed.append(b)
        top = max(top, off + size)
    naive = sum((b.nbytes + align - 1) // align * align for b in arena)
    return top, naive


def segment_precision(layer_precisions: Iterable[str | None], have_scales: bool) -> str:
    """The one precision a GPU segment is lowered at, from its layers' assigned precisions:
    FP32 if any layer asked for FP32 (a mixed segment must not lose precision a layer was
    promised), INT8 if any asked for INT8 and calibration scales exist (the lowering then runs
    INT8 where its kernels do and FP16 elsewhere), else FP16."""
    wanted = set(layer_precisions)
    if "fp32" in wanted:
        return "fp32"
    return "int8" if "int8" in wanted and have_scales else "fp16"


def args_for(launch: Launch, arena: int, weights: int, io: dict[int, int]) -> tuple[
        list[int], list[int], list[float]]:
    """Concrete pointer values for a launch once the arena / weights / IO are allocated."""
    ptrs = []
    for r in launch.ptrs:
        if r is None:
            ptrs.append(0)
        elif r.weight:
            ptrs.append(weights + r.byte_offset)
        elif r.buf is not None and r.buf.kind == "arena":
            ptrs.append(arena + r.buf.offset + r.byte_offset)
        elif r.buf is not None:
            ptrs.append(io[id(r.buf)] + r.byte_offset)
        else:
            ptrs.append(0)
    return ptrs, launch.ints, launch.floats


#: the ``layer`` of a launch that copies graph output ``T`` into its buffer is ``output:T``
OUTPUT_LAYER = "output:"


def kernels_by_layer(program: GpuProgram, graph: Graph) -> dict[str, int]:
    """How many launches (memsets included: each is a node of the captured CUDA graph, in
    order between kernels) each layer of ``graph`` -- the graph ``program`` was lowered from --
    emitted; a layer with none is absent. The copy of a graph output into its buffer
    (``output:T``) counts for the layer producing ``T``, the conversion of a graph input (named
    after the input: a host-computed bool mask widened once) for the first layer reading it."""
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    out: dict[str, int] = {}
    for ln in program.launches:
        name = ln.layer
        if name not in order and name.startswith(OUTPUT_LAYER):
            t = graph.tensors.get(name[len(OUTPUT_LAYER):])
            name = t.producer.name if t is not None and t.producer is not None else name
        elif name not in order and name in graph.tensors:
            readers = [c.name for c in graph.tensors[name].consumers if c.name in order]
            name = min(readers, key=order.__getitem__) if readers else name
        if name not in order:
            raise InternalError(f"launch {ln.kernel} names '{ln.layer}', no layer of the graph")
        out[name] = out.get(name, 0) + 1
    return out


def describe(program: GpuProgram) -> dict[str, Any]:
    """Summary numbers of a program (kernels, bytes, tactics)."""
    tactics: dict[str, int] = {}
    for ln in program.launches:
        if ln.tactic is not None:
            tactics[ln.tactic.name] = tactics.get(ln.tactic.name, 0) + 1
    return {"kernels": program.kernel_count, "arena_bytes": program.arena_bytes,
            "naive_activation_bytes": program.naive_bytes, "weight_bytes": program.weight_bytes,
            "tactics": tactics}
