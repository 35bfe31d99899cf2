"""Lower a graph (a GPU segment or a whole model) to a list of kernel launches, and plan memory.

Pure: no GPU needed, so plans, peak activation bytes and unsupported-layer errors are testable
in CI. ``devices/gpu.py`` resolves kernel names to functions, allocates and captures the launches
in a CUDA graph.

Layouts. Four-dimensional activations live in NHWC (tensor cores read channels contiguously);
everything else is "plain" (row-major in ONNX's axis order). A value's layout and dtype change
only through explicit copy kernels that :meth:`Lowering.ensure` inserts where a consumer needs
another form. Boundary tensors are plain FP32 (or the model dtype), i.e. NCHW as ONNX has them.

Views: Transpose, Slice / Split and a Reshape that splits NHWC channels make "strided" values
(no kernel); element-wise chains and copies read any strides, everything else materialises a
view once. A Concat along channels lets the convolutions producing its inputs write straight
into their channel slice of its buffer (zero-copy).

Fusions done here: Conv + bias (+ BatchNorm, folded earlier by the importer's passes) +
activation (incl. x*sigmoid(x) = SiLU) + residual Add (+ activation after the Add); MatMul with a
constant weight + bias Add + activation (incl. erf-GELU) + residual Add, as one GEMM. Every
other element-wise layer is deferred (:class:`Lazy`): chains of them, with the views between,
become one ``fused`` kernel, written straight into a Concat's slice where one follows (YOLO's
decode head: 3 kernels a scale instead of 11). A strided RGB stem runs as space-to-depth plus a
stride-1 convolution (:meth:`Lowering._space_to_depth`).

INT8 (precision "int8" with per-tensor ``scales``, scale = threshold / 127): a convolution runs
on INT8 tensor cores (m16n8k32) when its input has a scale, one group and C % 16 == 0 on sm_80+;
its weights are quantised per output channel (symmetric, max-abs / 127), its epilogue
dequantises (input scale x weight scale[k]), adds bias / residual / activation in FP32 and
writes INT8 requantised by the output's scale when every reader takes INT8 (another INT8
convolution, or a residual Add fused into one), else FP16. Every other layer runs in FP16 and
reads INT8 values through one dequantising copy (``value``). Quantisation is round half to
even with saturation, as ONNX QuantizeLinear and TensorRT.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpu_kernels.tactics import DIRECT, ConvProblem, ConvTactic, mma_eligible
from partitioner.errors import TandemError, UnsupportedOpError
from partitioner.ir import Constant, Graph, Node, Tensor

ACT = {
    "none": 0, "relu": 1, "clip": 2, "leaky": 3, "sigmoid": 4, "silu": 5, "hardswish": 6,
    "hardsigmoid": 7, "gelu": 8, "tanh": 9, "erf": 10, "exp": 11, "sqrt": 12, "recip": 13,
    "neg": 14, "abs": 15, "elu": 16, "softplus": 17, "mish": 18, "log": 19,
}
UNARY_OPS = {
    "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "LeakyRelu": "leaky",
    "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish", "Erf": "erf", "Exp": "exp",
    "Sqrt": "sqrt", "Reciprocal": "recip", "Neg": "neg", "Abs": "abs", "Elu": "elu",
    "Softplus": "softplus", "Mish": "mish", "Log": "log", "Gelu": "gelu", "Clip": "clip",
}
BINARY_OPS = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Pow": 4, "Max": 5, "Min": 6, "Sum": 0}
ALIAS_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
MAXR = 6
DTYPE_BYTES = {"f16": 2, "f32": 4, "i8": 1}
NP_DTYPE = {"f16": np.float16, "f32": np.float32, "i8": np.int8}


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


def _grid1d(n: int, block: int = 256) -> tuple[int, int, int]:
    return (max(1, min((n + block - 1) // block, 65535 * 8)), 1, 1)


FUSED_IN, FUSED_OPS = 6, 24  # as elementwise.cu


def _linearise(root: Leaf | Op) -> tuple[list[Value], list[list[int]]]:
    """An expression tree as the ``fused`` kernel's register program: distinct leaves first
    (one register each), then one instruction per distinct operation (common subexpressions,
    e.g. the x of x * sigmoid(x), computed once)."""
    leaves: list[Value] = []
    regs: dict[Any, int] = {}
    ops: list[list[int]] = []

    def key_of(v: Value) -> tuple[Any, ...]:
        where = ("w", v.buf.offset) if v.buf.kind == "weight" else ("a", id(v.buf))
        return where + (v.offset, v.custom, v.dtype)

    def visit(e: Leaf | Op) -> tuple[Any, int]:
        if isinstance(e, Leaf):
            k: Any = key_of(e.value)
            if k not in regs:
                regs[k] = len(leaves)
                leaves.append(e.value)
            return k, regs[k]
        args = [visit(x) for x in e.args]
        k = (e.code, tuple(a[0] for a in args), e.imm)
        if k not in regs:
            bits = np.asarray(e.imm, np.float32).view(np.int32)
            r = [a[1] for a in args] + [0]
            if e.code >= 8:  # immediate operand(s) in b (and c)
                r = [r[0], int(bits[0]), int(bits[1])]
            ops.append([e.code] + r[:3])
            regs[k] = -len(ops)  # resolved below, once the leaf count is known
        return k, regs[k]

    visit(root)
    nin = len(leaves)
    # registers: leaves 0..nin-1, op j -> nin + j (ops were numbered -1, -2, ... as found)
    for o in ops:
        if o[0] < 8:
            o[1], o[2] = (x if x >= 0 else nin - x - 1 for x in o[1:3])
        else:
            o[1] = o[1] if o[1] >= 0 else nin - o[1] - 1
    return leaves, ops


def _loop_dims(shape: list[int], strides: list[list[int]], layer: str) -> tuple[
        list[int], list[list[int]]]:
    """The loop a strided kernel runs over ``shape``: outermost first in the memory order of
    the first (destination) strides, so writes coalesce; size-1 axes dropped, and neighbours
    contiguous in every operand merged (fewer div/mod per element)."""
    order = sorted(range(len(shape)), key=lambda a: -strides[0][a])
    dims = [(shape[a], [s[a] for s in strides]) for a in order if shape[a] != 1] \
        or [(1, [0] * len(strides))]
    merged = [dims[0]]
    for n, st in dims[1:]:
        pn, pst = merged[-1]
        if all(p == q * n for p, q in zip(pst, st)):
            merged[-1] = (pn * n, st)
        else:
            merged.append((n, st))
    if len(merged) > MAXR:
        raise GpuLoweringError(f"layer '{layer}': strided loops of rank > {MAXR} are not "
                               "supported")
    return [m[0] for m in merged], [[m[1][i] for m in merged] for i in range(len(strides))]


def _view(x: Value | Lazy, shape: tuple[int, ...], view: Callable[[Value], Value]
          ) -> Value | Lazy:
    """A view (transpose, slice) of a value, or of a deferred chain: of each of its leaves."""
    if isinstance(x, Value):
        return view(x)

    def walk(e: Leaf | Op) -> Leaf | Op:
        if isinstance(e, Leaf):
            return Leaf(view(e.value))
        return Op(e.code, tuple(walk(a) for a in e.args), e.imm)
    return Lazy(shape, walk(x.root), "plain", x.dtype)


def _batch_groups(shape: tuple[int, ...], strides: list[list[int]]
                  ) -> list[tuple[int, list[int]]]:
    """The batch axes of a batched product merged where every operand's strides allow:
    (count, stride per operand) per group, outermost first (``bmm`` takes two groups)."""
    groups: list[tuple[int, list[int]]] = []
    for i, d in enumerate(shape):
        if d == 1:
            continue
        ss = [st[i] for st in strides]
        if groups and all(g == s * d for g, s in zip(groups[-1][1], ss)):
            groups[-1] = (groups[-1][0] * d, ss)
        else:
            groups.append((d, ss))
    return groups


def _is_dense(v: Value) -> bool:
    """Whether a view's strides are those of a contiguous row-major tensor of its shape."""
    dense = Value(v.buf, v.shape, "plain", v.dtype).strides()
    return all(d == 1 or s == c for d, s, c in zip(v.shape, v.strides(), dense))


def _const(node: Node, i: int) -> np.ndarray | None:
    return node.constant_input(i)


# ----- the lowering --------------------------------------------------------------------------
class Lowering:
    def __init__(self, graph: Graph, precision: str, arch: int, choose: TacticChooser,
                 scales: dict[str, float] | None = None) -> None:
        if precision not in ("fp16", "fp32", "int8"):
            raise GpuLoweringError(
                f"GPU precision '{precision}' is not supported (use fp32, fp16 or int8)"
            )
        if precision == "int8" and not scales:
            raise GpuLoweringError(
                "GPU precision 'int8' needs per-tensor scales (calibrate, or a QAT model's Q/DQ "
                "scales)"
            )
        self.graph = graph
        self.dt = "f32" if precision == "fp32" else "f16"  # INT8 runs everything else in FP16
        self.scales = {k: float(v) for k, v in (scales or {}).items() if v > 0} \
            if precision == "int8" else {}
        self.arch = arch
        self.choose = choose
        self.launches: list[Launch] = []
        self.buffers: list[VBuf] = []
        self.values: dict[str, Value | Lazy] = {}
        self.weights: list[tuple[int, np.ndarray]] = []
        self.weight_bytes = 0
        self._weight_cache: dict[tuple[int, str], Ref] = {}
        self.fused: set[str] = set()
        self._converted: dict[tuple[Any, ...], Value] = {}
        # zero-copy channel concat: producer output tensor -> (Concat node, channel offset)
        self.concat_slot: dict[str, tuple[Node, int]] = {}
        self.concat_values: dict[str, Value] = {}

    # ----- helpers -------------------------------------------------------------------------
    def new_buf(self, nbytes: int, kind: str = "arena", name: str = "") -> VBuf:
        step = len(self.launches)
        b = VBuf(int(nbytes), step, step, kind, name)
        self.buffers.append(b)
        return b

    def new_value(self, shape: tuple[int, ...], layout: str, dtype: str | None = None) -> Value:
        dtype = dtype or self.dt
        n = int(np.prod(shape, dtype=np.int64))
        if n >= 2**31:  # the kernels index with 32-bit integers
            raise GpuLoweringError(f"tensor of shape {shape} has more than 2^31 elements; "
                                   "split the batch to run it on the GPU")
        return Value(self.new_buf(n * DTYPE_BYTES[dtype]), tuple(shape), layout, dtype)

    def ref(self, v: Value) -> Ref:
        if v.buf.kind == "weight":
            return Ref(None, v.buf.offset + v.offset * DTYPE_BYTES[v.dtype], weight=True)
        return Ref(v.buf, v.offset * DTYPE_BYTES[v.dtype])

    def weight(self, array: np.ndarray, dtype: str | None = None) -> Ref:
        arr = np.ascontiguousarray(array, dtype=NP_DTYPE[dtype] if dtype else None)
        off = self.weight_bytes
        self.weights.append((off, arr))
        self.weight_bytes = off + ((arr.nbytes + 255) // 256) * 256
        return Ref(None, off, weight=True)

    def emit(self, launch: Launch) -> None:
        step = len(self.launches)
        self.launches.append(launch)
        for r in launch.ptrs:
            if r is not None and r.buf is not None:
                r.buf.first = min(r.buf.first, step)
                r.buf.last = max(r.buf.last, step)

    def value(self, t: Tensor | None, node: Node, raw: bool = False) -> Value:
        """``t`` as the GPU holds it; INT8 values come dequantised to FP16 unless ``raw``."""
        if t is None:
            raise GpuLoweringError(f"layer '{node.name}' ({node.op}): a required input is missing")
        if isinstance(t, Constant):
            if t.values.dtype.kind != "f":
                raise GpuLoweringError(
                    f"layer '{node.name}' ({node.op}): non-float constant input '{t.name}' "
                    "is not supported on the GPU"
                )
            return self.const_value(t.values, id(t))
        if t.name not in self.values:
            raise GpuLoweringError(
                f"layer '{node.name}' ({node.op}): input '{t.name}' has no value"
            )
        v = self.values[t.name]
        if isinstance(v, Lazy):  # a deferred chain is computed once, for every reader
            v = self.values[t.name] = self.materialise(v, node.name)
        if v.dtype == "i8" and not raw:
            return self.ensure(v, None, self.dt, node.name)
        return v

    def const_value(self, array: np.ndarray, key: int | None = None) -> Value:
        """A constant in the weight arena (uploaded once; ``key`` shares repeated uses)."""
        if key is None:
            r = self.weight(array, self.dt)
        else:
            if (key, self.dt) not in self._weight_cache:
                self._weight_cache[(key, self.dt)] = self.weight(array, self.dt)
            r = self._weight_cache[(key, self.dt)]
        # a value without an activation buffer
        val = Value(VBuf(0, 0, 0, "weight"), tuple(int(d) for d in array.shape), "plain", self.dt)
        val.buf.offset = r.byte_offset
        return val

    def copy(self, src: Value, dst: Value, layer: str, shape: list[int] | None = None,
             src_strides: list[int] | None = None, dst_strides: list[int] | None = None) -> None:
        """dst[...] = src[...] over a logical ``shape`` (default src.shape), any strides/dtypes."""
        shape = list(shape if shape is not None else src.shape)
        ss = list(src_strides if src_strides is not None else src.strides())
        ds = list(dst_strides if dst_strides is not None else dst.strides())
        dims, (ds, ss) = _loop_dims(shape, [ds, ss], layer)
        pad = [0] * (MAXR - len(dims))
        ints = [len(dims)] + dims + pad + ss + pad + ds + pad
        n = int(np.prod(dims))
        factor = (src.scale if src.dtype == "i8" else 1.0) / (
            dst.scale if dst.dtype == "i8" else 1.0)  # (de)quantise on the way
        self.emit(Launch(layer, f"copy_{src.dtype}_{dst.dtype}", _grid1d(n), 256,
                         [self.ref(src), self.ref(dst)], ints, [factor]))

    def ensure(self, v: Value, layout: str | None, dtype: str | None, layer: str,
               keep_strided: bool = False, scale: float = 0.0) -> Value:
        """``v`` in the wanted layout / dtype, converted by one copy kernel when it differs.

        Views (layout "strided": transposes, slices) are materialised here, once, unless the
        caller reads arbitrary strides itself (``keep_strided``: binary ops, copies). INT8 needs
        the ``scale`` to quantise with.
        """
        if v.layout == "strided" and _is_dense(v):  # e.g. a transpose of a transposed write
            v = Value(v.buf, v.shape, "plain", v.dtype, v.offset, scale=v.scale)
        if v.layout == "strided":
            if keep_strided and layout is None and (dtype or v.dtype) == v.dtype:
                return v
            layout = layout or "plain"
        layout = layout or v.layout
        dtype = dtype or v.dtype
        if layout == "nhwc" and len(v.shape) != 4:
            raise GpuLoweringError(f"layer '{layer}': needs a 4-D input, got shape {v.shape}")
        dense_nhwc = v.layout == "nhwc" and (v.cs in (0, v.shape[1]))
        same_scale = dtype != "i8" or v.scale == scale
        if v.layout == layout and v.dtype == dtype and same_scale \
                and (layout == "plain" or dense_nhwc):
            return v
        if v.layout == "nhwc" and layout == "plain" and v.dtype == dtype and dense_nhwc \
                and v.shape[2] * v.shape[3] == 1 and same_scale:
            return Value(v.buf, v.shape, "plain", dtype, v.offset, scale=v.scale)  # same order
        key = (id(v.buf), v.offset, v.shape, v.layout, v.cs, v.custom, layout, dtype, scale)
        if key not in self._converted:  # convert once, however many readers need it
            if dtype == "i8" and scale <= 0:
                raise GpuLoweringError(f"layer '{layer}': quantising to INT8 needs a scale")
            out = self.new_value(v.shape, layout, dtype)
            out.scale = scale if dtype == "i8" else 0.0
            self.copy(v, out, layer)
            self._converted[key] = out
        return self._converted[key]

    # ----- graph ---------------------------------------------------------------------------
    def run(self) -> GpuProgram:
        g = self.graph
        inputs = {}
        for t in g.inputs:
            shape = tuple(int(d) for d in t.static_shape())
            np_dt = np.dtype(t.dtype or "float32")
            if np_dt.kind != "f":
                raise GpuLoweringError(f"input '{t.name}': dtype {np_dt} is not supported on GPU")
            dt = "f16" if np_dt == np.float16 else "f32"
            buf = self.new_buf(int(np.prod(shape)) * np_dt.itemsize, "input", t.name)
            self.values[t.name] = Value(buf, shape, "plain", dt)
            inputs[t.name] = (buf, shape, np_dt)
        self._plan_concats()
        for node in g.topological_order():
            if node.name in self.fused:
                continue
            handler = getattr(self, f"op_{node.op}", None)
            if node.domain not in ("", "ai.onnx") or handler is None:
                raise GpuLoweringError(
                    f"layer '{node.name}': op {node.op} has no GPU kernel in Tandem; "
                    "place it on another device (policy rule) or run it on the CPU"
                )
            try:
                handler(node)
            except GpuLoweringError:
                raise
            except TandemError:
                raise
            except (ValueError, IndexError, KeyError, TypeError) as err:
                raise GpuLoweringError(
                    f"layer '{node.name}' ({node.op}): cannot lower to GPU kernels ({err})"
                ) from err
        outputs = {}
        for t in g.outputs:
            v = self.value(t, Node("output", "Output"))
            np_dt = np.dtype(t.dtype or "float32")
            dt = "f16" if np_dt == np.float16 else "f32"
            buf = self.new_buf(v.size * np_dt.itemsize, "output", t.name)
            out = Value(buf, v.shape, "plain", dt)
            self.copy(v, out, f"output:{t.name}")
            outputs[t.name] = (buf, v.shape, np_dt)
        arena, naive = plan_memory(self.buffers)
        return GpuProgram(self.launches, self.buffers, self.weights, self.weight_bytes, inputs,
                          outputs, arena, naive)

    def _plan_concats(self) -> None:
        """Let producers of channel-Concat inputs write straight into the Concat's buffer."""
        for node in self.graph.nodes:
            if node.op != "Concat" or not node.outputs[0].is_static:
                continue
            out = node.outputs[0].static_shape()
            ins = list(node.inputs)
            if len(out) != 4 or int(node.attrs.get("axis", 1)) % 4 != 1:
                continue
            if any(t is None or isinstance(t, Constant) or not t.is_static
                   or len(t.static_shape()) != 4 for t in ins):
                continue
            off = 0
            for t in ins:
                assert t is not None
                if ins.count(t) == 1 and t not in self.graph.outputs \
                        and t not in self.graph.inputs and t.name not in self.concat_slot:
                    self.concat_slot[t.name] = (node, off)
                off += int(t.static_shape()[1])

    def _concat_value(self, node: Node) -> Value:
        """The buffer a channel Concat's producers write into: INT8 (with the Concat output's
        scale, so each producer requantises into it) when every reader takes INT8 and every
        input comes from an INT8 convolution, else the compute precision."""
        if node.name not in self.concat_values:
            t = node.outputs[0]
            int8 = self._wants_int8(t) and all(self._int8_producer(u) for u in node.inputs)
            v = self.new_value(self.out_shape(node), "nhwc", "i8" if int8 else None)
            v.scale = self.scales[t.name] if int8 else 0.0
            self.concat_values[node.name] = v
        return self.concat_values[node.name]

    def out_nhwc(self, t: Tensor, shape: tuple[int, ...], int8_ok: bool = False) -> Value:
        """A new NHWC output for tensor ``t``: a channel slice of a Concat when one awaits it,
        INT8 when every reader takes INT8 and the producing kernel can write INT8
        (``int8_ok``)."""
        slot = self.concat_slot.get(t.name)
        if slot is not None:
            cv = self._concat_value(slot[0])
            if cv.dtype == "i8" and not int8_ok:
                return self.new_value(shape, "nhwc")  # op_Concat quantises it into place
            return Value(cv.buf, shape, "nhwc", cv.dtype, cv.offset + slot[1], cv.shape[1],
                         scale=cv.scale)
        if int8_ok and self._wants_int8(t):
            v = self.new_value(shape, "nhwc", "i8")
            v.scale = self.scales[t.name]
            return v
        return self.new_value(shape, "nhwc")

    def conv_input(self, v: Value, layer: str, align: int = 8) -> Value:
        """NHWC input in the compute precision for a kernel that reads any pixel stride: a
        channel slice (of a zero-copy Concat's buffer) stays in place when its pixel stride and
        offset are multiples of ``align`` elements (8: the 16-byte loads of convolutions);
        anything else is converted to dense NHWC once."""
        if v.layout == "nhwc" and v.dtype == self.dt and v.buf.kind != "weight" \
                and (v.cs or v.shape[1]) % align == 0 and v.offset % align == 0:
            return v
        return self.ensure(v, "nhwc", self.dt, layer)

    def out_shape(self, node: Node, i: int = 0) -> tuple[int, ...]:
        return tuple(int(d) for d in node.outputs[i].static_shape())

    def bind(self, node: Node, v: Value, i: int = 0) -> None:
        self.values[node.outputs[i].name] = v

    # ----- fusion matching -----------------------------------------------------------------
    def _sole_reader(self, t: Tensor) -> Node | None:
        if t in self.graph.outputs or len(t.consumers) != 1:
            return None
        return t.consumers[0]

    def _activation(self, node: Node) -> tuple[str, float, float] | None:
        """(kind, alpha, beta) when ``node`` is a fusible activation."""
        op = node.op
        if op == "Relu":
            return "relu", 0.0, 0.0
        if op == "LeakyRelu":
            return "leaky", float(node.attrs.get("alpha", 0.01)), 0.0
        if op == "Sigmoid":
            return "sigmoid", 0.0, 0.0
        if op == "Tanh":
            return "tanh", 0.0, 0.0
        if op == "HardSwish":
            return "hardswish", 0.0, 0.0
        if op == "HardSigmoid":
            return "hardsigmoid", float(node.attrs.get("alpha", 0.2)), \
                float(node.attrs.get("beta", 0.5))
        if op == "Gelu" and node.attrs.get("approximate", "none") == "none":
            return "gelu", 0.0, 0.0
        if op == "Clip":
            lo, hi = node.input(1), node.input(2)
            if (lo is not None and not isinstance(lo, Constant)) or (
                    hi is not None and not isinstance(hi, Constant)):
                return None
            lo_v = float(lo.values.reshape(-1)[0]) if isinstance(lo, Constant) else -3.0e38
            hi_v = float(hi.values.reshape(-1)[0]) if isinstance(hi, Constant) else 3.0e38
            return "clip", lo_v, hi_v
        return None

    def _const_is(self, t: Tensor | None, value: float) -> bool:
        return isinstance(t, Constant) and t.values.size == 1 and \
            abs(float(t.values.reshape(-1)[0]) - value) < 1e-4 * max(1.0, abs(value))

    def _match_gelu(self, t: Tensor) -> tuple[list[Node], Tensor] | None:
        """x * 0.5 * (1 + erf(x / sqrt(2))) as exported from PyTorch (two orders)."""
        readers = t.consumers
        if len(readers) != 2:
            return None
        div = next((n for n in readers if n.op == "Div" and n.inputs[0] is t
                    and self._const_is(n.input(1), 2 ** 0.5)), None)
        other = next((n for n in readers if n is not div), None)
        if div is None or other is None or other.op != "Mul":
            return None
        erf = self._sole_reader(div.outputs[0])
        add = self._sole_reader(erf.outputs[0]) if erf is not None and erf.op == "Erf" else None
        if add is None or add.op != "Add" or not any(self._const_is(x, 1.0) for x in add.inputs):
            return None
        final = self._sole_reader(add.outputs[0])
        if final is None or final.op != "Mul":
            return None
        half_const = any(self._const_is(x, 0.5) for x in other.inputs)
        if half_const and self._sole_reader(other.outputs[0]) is final and \
                {id(x) for x in final.inputs} == {id(other.outputs[0]), id(add.outputs[0])}:
            return [div, erf, add, other, final], final.outputs[0]  # (x * 0.5) * (1 + erf)
        if other is final:  # x * (1 + erf), then * 0.5
            last = self._sole_reader(final.outputs[0])
            if last is not None and last.op == "Mul" and \
                    any(self._const_is(x, 0.5) for x in last.inputs):
                return [div, erf, add, final, last], last.outputs[0]
        return None

    def _match_act(self, t: Tensor) -> tuple[list[Node], tuple[str, float, float], Tensor] | None:
        if t in self.graph.outputs:
            return None
        gelu = self._match_gelu(t)
        if gelu is not None and all(n.outputs[0] not in self.graph.outputs for n in gelu[0][:-1]):
            return gelu[0], ("gelu", 0.0, 0.0), gelu[1]
        readers = t.consumers
        if len(readers) == 2:  # SiLU: x * sigmoid(x)
            sig = next((n for n in readers if n.op == "Sigmoid"), None)
            mul = next((n for n in readers if n.op == "Mul"), None)
            if sig is not None and mul is not None and sig.outputs[0].consumers == [mul] \
                    and sig.outputs[0] not in self.graph.outputs \
                    and {id(x) for x in mul.inputs} == {id(t), id(sig.outputs[0])}:
                return [sig, mul], ("silu", 0.0, 0.0), mul.outputs[0]
            return None
        node = self._sole_reader(t)
        if node is None or node.inputs[0] is not t:
            return None
        act = self._activation(node)
        return ([node], act, node.outputs[0]) if act else None

    def _match_residual(self, t: Tensor, shape: tuple[int, ...]) -> tuple[Node, Tensor] | None:
        add = self._sole_reader(t)
        if add is None or add.op != "Add" or len(add.inputs) != 2:
            return None
        other = add.inputs[1] if add.inputs[0] is t else add.inputs[0]
        if other is None or isinstance(other, Constant) or other.name not in self.values:
            return None
        if self.values[other.name].shape != shape:
            return None
        return add, other

    # ----- INT8 decisions ------------------------------------------------------------------
    def _int8_scale(self, node: Node) -> float | None:
        """The input scale when ``node`` is a convolution that runs on INT8 tensor cores."""
        if not self.scales or self.arch < 80 or node.op != "Conv":
            return None
        x, w = node.input(0), _const(node, 1)
        if x is None or w is None or w.ndim != 4 or int(node.attrs.get("group", 1)) != 1:
            return None
        if not x.is_static or int(x.static_shape()[1]) % 16:
            return None
        return self.scales.get(x.name)

    def _int8_producer(self, u: Tensor | None) -> bool:
        """Whether ``u`` comes from an INT8 convolution, possibly through the activation its
        epilogue fuses (Relu, SiLU = x * Sigmoid(x), ...). A guess: where the fusion does not
        happen after all, readers dequantise / Concat copies, which is correct, only slower."""
        for _ in range(3):
            if u is None or isinstance(u, Constant) or u.producer is None:
                return False
            prod = u.producer
            if prod.op == "Conv":
                return self._int8_scale(prod) is not None
            if prod.op != "Mul" and self._activation(prod) is None:
                return False
            u = prod.input(0)
        return False

    def _feeds_int8_residual(self, add: Node, t: Tensor) -> bool:
        """Whether Add ``add`` will fuse as the residual of an INT8 convolution reading ``t``."""
        other = next((x for x in add.inputs if x is not None and x is not t), None)
        return self._int8_producer(other)

    def _wants_int8(self, t: Tensor) -> bool:
        """Store ``t`` as INT8: it has a scale and every reader takes INT8 (else one FP16 copy
        serves every reader). A reader that cannot fuse after all dequantises (correct, slower)."""
        if not self.scales or t.name not in self.scales or t in self.graph.outputs \
                or t.name in self.concat_slot or not t.consumers:
            return False
        for r in t.consumers:
            if r.op == "Conv" and r.input(0) is t and t not in r.inputs[1:] \
                    and self._int8_scale(r) is not None:
                continue
            if r.op == "Add" and len(r.inputs) == 2 and self._feeds_int8_residual(r, t):
                continue
            return False
        return True

    # ----- convolution ---------------------------------------------------------------------
    def op_Conv(self, node: Node) -> None:
        s_in = self._int8_scale(node)
        x = self.value(node.input(0), node, raw=s_in is not None)
        w = _const(node, 1)
        if w is None or w.ndim != 4:
            raise GpuLoweringError(
                f"layer '{node.name}' (Conv): only 2-D convolutions with constant weights run "
                "on the GPU"
            )
        b = _const(node, 2)
        if node.input(2) is not None and b is None:
            raise GpuLoweringError(f"layer '{node.name}' (Conv): run-time bias is not supported")
        groups = int(node.attrs.get("group", 1))
        K, Cg, R, S = (int(d) for d in w.shape)
        N, C, H, W = x.shape
        out_shape = self.out_shape(node)
        P, Q = out_shape[2], out_shape[3]
        st = list(node.attrs.get("strides", [1, 1]))
        pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
        dil = list(node.attrs.get("dilations", [1, 1]))
        # fusions: activation, residual add, activation after the add
        t = node.outputs[0]
        act, res, res_after = ("none", 0.0, 0.0), None, 0
        m = self._match_act(t)
        if m:
            nodes, act, t = m
            self.fused.update(n.name for n in nodes)
        r = self._match_residual(t, out_shape)
        if r:
            add, other = r
            res_after = 1 if act[0] != "none" else 0
            res = other
            self.fused.add(add.name)
            t = add.outputs[0]
            if act[0] == "none":
                m2 = self._match_act(t)
                if m2:
                    nodes, act, t = m2
                    self.fused.update(n.name for n in nodes)
        # weights: OIHW -> [K][R][S][C/g]
        wk = np.ascontiguousarray(np.transpose(w, (0, 2, 3, 1)))
        if s_in is not None:
            self._conv_int8(node, s_in, x, wk, b, res, t, out_shape, act, res_after,
                            (st[0], st[1]), (pads[0], pads[1]), (dil[0], dil[1]))
            return
        if groups == C == K and Cg == 1:
            wk = np.ascontiguousarray(np.transpose(w[:, 0], (1, 2, 0)))  # depthwise: [R][S][C]
            xin = self.conv_input(x, node.name)
        elif groups == 1 and C % 8 and self.dt == "f16" and self.arch >= 80:
            s = st[0]
            if s > 1 and st[1] == s and list(dil) == [1, 1] and C * s * s <= 16 \
                    and x.layout == "plain" and x.custom is None and x.dtype in ("f32", "f16"):
                # an RGB stem with stride s: as a stride-1 convolution over C*s*s channels it
                # has fewer zero taps than with C padded to 8, and needs no memset
                xin, wk = self._space_to_depth(node.name, x, w, s, pads, P, Q)
                _, C, H, W = xin.shape
                R, S, st, pads = wk.shape[1], wk.shape[2], [1, 1], [0, 0, 0, 0]
            else:  # zero-pad channels to a multiple of 8 so tensor cores take it
                xin = self.padded_nhwc(x, -(-C // 8) * 8, node.name)
                C = xin.cs
                wk = np.concatenate([wk, np.zeros((K, R, S, C - wk.shape[3]), wk.dtype)],
                                    axis=3)
        else:
            xin = self.conv_input(x, node.name)
        rv = self.conv_input(self.value(res, node, raw=True), node.name) if res else None
        problem = ConvProblem(N, H, W, C, K, P, Q, R, S, (st[0], st[1]), (pads[0], pads[1]),
                              (dil[0], dil[1]), groups,
                              "float16" if self.dt == "f16" else "float32")
        # the tensor-core kernel and the FP16 depthwise kernel can requantise to INT8
        depthwise = groups == C == K and Cg == 1
        y = self.out_nhwc(t, out_shape, int8_ok=mma_eligible(problem, self.arch)
                          or (depthwise and self.dt == "f16"))
        self.conv_launch(node.name, problem, xin, self.weight(wk, self.dt),
                         self.weight(b.astype(np.float32)) if b is not None else None,
                         rv, y, act, res_after)
        self.values[t.name] = y

    def _conv_int8(self, node: Node, s_in: float, x: Value, wk: np.ndarray,
                   b: np.ndarray | None, res: Tensor | None, t: Tensor,
                   out_shape: tuple[int, ...], act: tuple[str, float, float], res_after: int,
                   stride: tuple[int, int], pad: tuple[int, int],
                   dilation: tuple[int, int]) -> None:
        """The INT8 tensor-core convolution: per-channel weight scales, fused requantisation."""
        N, C, H, W = x.shape
        K, R, S, _ = wk.shape
        aligned = x.layout == "nhwc" and x.dtype == "i8" and x.scale == s_in \
            and (x.cs or C) % 16 == 0 and x.offset % 16 == 0
        xin = x if aligned else self.ensure(x, "nhwc", "i8", node.name, scale=s_in)
        amax = np.abs(wk.reshape(K, -1)).max(axis=1).astype(np.float64)
        w_scale = np.where(amax > 0, amax / 127.0, 1.0)
        wq = np.clip(np.rint(wk / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
        dq = self.weight((s_in * w_scale).astype(np.float32))
        rv = None
        if res is not None:
            rv = self.value(res, node, raw=True)
            if not (rv.layout == "nhwc" and rv.dtype == "i8" and rv.offset % 8 == 0
                    and (rv.cs or rv.shape[1]) % 8 == 0):
                rv = self.conv_input(rv, node.name)
        y = self.out_nhwc(t, out_shape, int8_ok=True)
        problem = ConvProblem(N, H, W, C, K, out_shape[2], out_shape[3], R, S, stride, pad,
                              dilation, 1, "int8")
        self.conv_launch(node.name, problem, xin, self.weight(wq),
                         self.weight(b.astype(np.float32)) if b is not None else None,
                         rv, y, act, res_after, dq)
        self.values[t.name] = y

    def _space_to_depth(self, layer: str, x: Value, w: np.ndarray, s: int, pads: list[int],
                        P: int, Q: int) -> tuple[Value, np.ndarray]:
        """A stride-``s`` convolution of plain NCHW ``x`` with weights ``w`` (OIHW) as a stride-1,
        unpadded one: returns the rearranged NHWC input (C*s*s channels, padded to 8) and the
        [K][R'][S'][C'] weights, R' = ceil(R / s). Tap (s*a + b) of the original reads what
        input pixel (o + a), channel block b of the rearranged one holds."""
        N, C, H, W = x.shape
        K, _, R, S = w.shape
        ka, kb = -(-R // s), -(-S // s)
        U, V, cp = P + ka - 1, Q + kb - 1, -(-C * s * s // 8) * 8
        y = self.new_value((N, cp, U, V), "nhwc")
        self.emit(Launch(layer, f"space_to_depth_{x.dtype}_f16", _grid1d(N * U * V), 256,
                         [self.ref(x), self.ref(y)], [N, C, H, W, s, pads[0], pads[1], U, V, cp]))
        taps = np.zeros((K, ka * s, kb * s, C), np.float32)  # the taps past R, S are zero
        taps[:, :R, :S] = np.transpose(w, (0, 2, 3, 1))
        # [K][a_h][b_h][a_w][b_w][C] -> [K][a_h][a_w][(b_h * s + b_w) * C + c]
        taps = taps.reshape(K, ka, s, kb, s, C).transpose(0, 1, 3, 2, 4, 5)
        wk = np.zeros((K, ka, kb, cp), np.float32)
        wk[..., :s * s * C] = taps.reshape(K, ka, kb, s * s * C)
        return y, wk

    def padded_nhwc(self, x: Value, cp: int, layer: str) -> Value:
        """``x`` as NHWC with ``cp`` channels per pixel, the extra channels zero."""
        key = (id(x.buf), x.offset, x.shape, x.layout, x.cs, "pad", cp)
        if key not in self._converted:
            N, C, H, W = x.shape
            buf = self.new_buf(N * H * W * cp * DTYPE_BYTES[self.dt])
            out = Value(buf, x.shape, "nhwc", self.dt, 0, cp)
            self.emit(Launch(layer, "memset", (1, 1, 1), 0, [self.ref(out)], [buf.nbytes]))
            self.copy(x, out, layer)
            self._converted[key] = out
        return self._converted[key]

    def conv_launch(self, layer: str, p: ConvProblem, x: Value, w: Ref, bias: Ref | None,
                    res: Value | None, y: Value, act: tuple[str, float, float],
                    res_after: int, dq: Ref | None = None) -> None:
        tactic = self.choose(p) if mma_eligible(p, self.arch) else DIRECT
        ints = p.conv_ints(ACT[act[0]], res_after, x.cs, y.cs, (res.cs or p.k) if res else 0)
        res_i8, out_i8 = int(res is not None and res.dtype == "i8"), int(y.dtype == "i8")
        # only the tensor-core kernel reads the INT8 flags (i[22:24], f[2:4]) and dq (p[7])
        floats = [act[1], act[2], 1.0 / y.scale if out_i8 else 0.0,
                  res.scale if res is not None and res_i8 else 0.0]
        resr = self.ref(res) if res else None
        if tactic.kind == "direct":
            n = p.n * p.p * p.q * p.k
            kernel = "conv_dw" if p.groups == p.c == p.k else "conv_direct"
            if p.groups == 1 and not out_i8:  # SIMT implicit GEMM, 64x64 tiles
                grid = (math.ceil(p.gemm_m / 64), math.ceil(p.k / 64), 1)
                self.emit(Launch(layer, f"conv_tiled_{self.dt}", grid, 256,
                                 [self.ref(x), w, bias, resr, self.ref(y)], ints, floats,
                                 problem=p, tactic=tactic))
                return
            if out_i8:  # only the FP16 depthwise kernels have an INT8-output variant
                assert kernel == "conv_dw" and self.dt == "f16", layer
            if kernel == "conv_dw" and self.dt == "f16" and all(
                    v % 8 == 0 for v in (p.c, x.cs or p.c, y.cs or p.k, x.offset, y.offset)):
                kernel, n = "conv_dw_x8", n // 8  # 8 channels a thread, 16-byte accesses
            suffix = "_i8" if out_i8 else ""
            self.emit(Launch(layer, f"{kernel}_{self.dt}{suffix}", _grid1d(n), 256,
                             [self.ref(x), w, bias, resr, self.ref(y)], ints, floats,
                             problem=p, tactic=tactic))
            return
        grid = (math.ceil(p.gemm_m / tactic.bm), math.ceil(p.k / tactic.bn), tactic.splits)
        if tactic.splits == 1:
            self.emit(Launch(layer, tactic.kernel, grid, tactic.threads,
                             [self.ref(x), w, bias, resr, self.ref(y), None, None, dq],
                             ints + p.mma_ints(1, res_i8, out_i8), floats, tactic.smem_bytes,
                             tactic, p))
            return
        ws = Value(self.new_buf(tactic.splits * p.gemm_m * p.k * 4), (tactic.splits,
                   p.gemm_m, p.k), "plain", "f32")
        counters = self.weight(np.zeros(grid[0] * grid[1], np.int32))  # persistent zeros
        self.emit(Launch(layer, tactic.kernel, grid, tactic.threads,
                         [self.ref(x), w, bias, resr, self.ref(y), self.ref(ws), counters, dq],
                         ints + p.mma_ints(tactic.splits, res_i8, out_i8), floats,
                         tactic.smem_bytes, tactic, p))

    def op_ConvTranspose(self, node: Node) -> None:
        x = self.ensure(self.value(node.input(0), node), "nhwc", self.dt, node.name)
        w = _const(node, 1)
        if w is None or w.ndim != 4:
            raise GpuLoweringError(f"layer '{node.name}' (ConvTranspose): needs 2-D constant W")
        b = _const(node, 2)
        groups = int(node.attrs.get("group", 1))
        C, Kg, R, S = (int(d) for d in w.shape)
        Cg = C // groups
        K = Kg * groups
        # ONNX [C][K/g][R][S] -> [K][R][S][C/g]
        wk = w.reshape(groups, Cg, Kg, R, S).transpose(0, 2, 3, 4, 1).reshape(K, R, S, Cg)
        N, _, H, W = x.shape
        out_shape = self.out_shape(node)
        st = list(node.attrs.get("strides", [1, 1]))
        pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
        dil = list(node.attrs.get("dilations", [1, 1]))
        t = node.outputs[0]
        act = ("none", 0.0, 0.0)
        m = self._match_act(t)
        if m:
            nodes, act, t = m
            self.fused.update(n.name for n in nodes)
        if [R, S] == st and not any(pads) and dil == [1, 1] and groups == 1 \
                and tuple(out_shape[2:]) == (H * R, W * S):
            # stride == kernel (U-Net's 2x2/2): non-overlapping taps, so it is a 1x1
            # convolution to R*S*K channels (tensor cores) followed by depth-to-space
            self.values[t.name] = self.deconv_as_gemm(node, x, wk, b, act, out_shape, t)
            return
        y = self.new_value(out_shape, "nhwc")
        ints = [N, H, W, C, K, out_shape[2], out_shape[3], R, S, st[0], st[1], pads[0], pads[1],
                dil[0], dil[1], groups, ACT[act[0]]]
        bias = self.weight(b.astype(np.float32)) if b is not None else None
        self.emit(Launch(node.name, f"conv_transpose_direct_{self.dt}",
                         _grid1d(int(np.prod(out_shape))), 256,
                         [self.ref(x), self.weight(wk, self.dt), bias, None, self.ref(y)],
                         ints, [act[1], act[2]]))
        self.values[t.name] = y

    def deconv_as_gemm(self, node: Node, x: Value, wk: np.ndarray, b: np.ndarray | None,
                       act: tuple[str, float, float], out_shape: tuple[int, ...],
                       t: Tensor) -> Value:
        K, R, S, C = wk.shape
        N, _, H, W = x.shape
        w2 = np.ascontiguousarray(wk.transpose(1, 2, 0, 3).reshape(R * S * K, 1, 1, C))
        bias = np.tile(b.astype(np.float32), R * S) if b is not None else None
        mid = self.new_value((N, R * S * K, H, W), "nhwc")
        p = ConvProblem(N, H, W, C, R * S * K, H, W, 1, 1,
                        dtype="float16" if self.dt == "f16" else "float32")
        self.conv_launch(node.name, p, x, self.weight(w2, self.dt),
                         self.weight(bias) if bias is not None else None, None, mid, act, 0)
        y = self.out_nhwc(t, out_shape)
        P, Q = out_shape[2], out_shape[3]
        cs = y.cs or K
        # mid[n, h, w, r, s, k] -> y[n, h*R + r, w*S + s, k]
        src = [H * W * R * S * K, W * R * S * K, R * S * K, S * K, K, 1]
        dst = [P * Q * cs, R * Q * cs, S * cs, Q * cs, cs, 1]
        self.copy(mid, y, f"{node.name}:depth_to_space", [N, H, W, R, S, K], src, dst)
        return y

    # ----- GEMM ----------------------------------------------------------------------------
    def _gemm_const(self, node: Node, a: Value, wkn: np.ndarray, bias: np.ndarray | None,
                    out_shape: tuple[int, ...]) -> None:
        """A (.., K) @ W (K, N) + bias as a 1x1 convolution over M = prod(leading) pixels."""
        Kd, Nd = wkn.shape
        a = self.ensure(a, "plain", self.dt, node.name)
        M = a.size // Kd
        t = node.outputs[0]
        act = ("none", 0.0, 0.0)
        m = self._match_act(t)
        if m:
            nodes, act, t = m
            self.fused.update(n.name for n in nodes)
        if act[0] == "none":
            # a following bias Add (MatMul + Add as exported) folds into the epilogue
            add = self._sole_reader(t)
            if add is not None and add.op == "Add" and len(add.inputs) == 2:
                c = next((x for x in add.inputs if isinstance(x, Constant)), None)
                if c is not None and c.values.size == Nd and c.values.shape[-1] == Nd:
                    extra = c.values.reshape(-1).astype(np.float32)
                    bias = extra if bias is None else bias + extra
                    self.fused.add(add.name)
                    t = add.outputs[0]
                    m = self._match_act(t)
                    if m:
                        nodes, act, t = m
                        self.fused.update(n.name for n in nodes)
        res, res_after = None, 0
        r = self._match_residual(t, out_shape)
        if r:
            add, other = r
            rv = self.ensure(self.value(other, node), "plain", self.dt, node.name)
            res = Value(rv.buf, (M, Nd, 1, 1), "nhwc", rv.dtype, rv.offset)
            res_after = 1 if act[0] != "none" else 0
            self.fused.add(add.name)
            t = add.outputs[0]
        x4 = Value(a.buf, (M, Kd, 1, 1), "nhwc", a.dtype, a.offset)
        y = self.new_value(out_shape, "plain")
        y4 = Value(y.buf, (M, Nd, 1, 1), "nhwc", y.dtype, y.offset)
        p = ConvProblem(M, 1, 1, Kd, Nd, 1, 1, 1, 1,
                        dtype="float16" if self.dt == "f16" else "float32")
        wref = self.weight(np.ascontiguousarray(wkn.T), self.dt)
        bref = self.weight(np.ascontiguousarray(bias, np.float32)) if bias is not None else None
        self.conv_launch(node.name, p, x4, wref, bref, res, y4, act, res_after)
        self.values[t.name] = y

    def op_Gemm(self, node: Node) -> None:
        a = self.value(node.input(0), node)
        bw = _const(node, 1)
        if bw is None:
            raise GpuLoweringError(f"layer '{node.name}' (Gemm): B must be a constant")
        alpha = float(node.attrs.get("alpha", 1.0))
        beta = float(node.attrs.get("beta", 1.0))
        if int(node.attrs.get("transA", 0)):
            a = self.ensure(a, "plain", self.dt, node.name)
            at = self.new_value((a.shape[1], a.shape[0]), "plain")
            self.copy(a, at, node.name, [a.shape[1], a.shape[0]], a.strides()[::-1])
            a = at
        wkn = bw.T if int(node.attrs.get("transB", 0)) else bw
        c = _const(node, 2)
        if node.input(2) is not None and c is None:
            raise GpuLoweringError(f"layer '{node.name}' (Gemm): C must be a constant")
        Nd = wkn.shape[1]
        bias = None
        if c is not None:
            if c.size not in (1, Nd) or (c.ndim == 2 and c.shape[0] != 1):
                raise GpuLoweringError(f"layer '{node.name}' (Gemm): C must broadcast per column")
            bias = np.broadcast_to(beta * c.reshape(-1).astype(np.float32), (Nd,))
        self._gemm_const(node, a, alpha * wkn.astype(np.float32), bias, self.out_shape(node))

    def op_MatMul(self, node: Node) -> None:
        bw = _const(node, 1)
        a = self.value(node.input(0), node)
        if bw is not None and bw.ndim == 2:
            self._gemm_const(node, a, bw.astype(np.float32), None, self.out_shape(node))
            return
        b = self.value(node.input(1), node)
        out_shape = self.out_shape(node)
        if len(a.shape) < 2 or len(b.shape) < 2:
            raise GpuLoweringError(f"layer '{node.name}' (MatMul): 1-D operands not supported")
        M, Kd = a.shape[-2:]
        Nd = b.shape[-1]
        bshape = out_shape[:-2]
        for v in (a, b):
            if any(d not in (1, o) for d, o in zip(v.shape[-3::-1], bshape[::-1])):
                raise GpuLoweringError(f"layer '{node.name}' (MatMul): batch broadcasting of "
                                       f"{a.shape} x {b.shape} is not supported")
        # in place where the views allow (attention's head split, K^T, head merge); else the
        # operands, then the result too, are made contiguous, which always fits
        y = self._bmm_output(node, out_shape)
        for attempt in range(3):
            va = self.ensure(a, "plain", self.dt, node.name) if attempt else a
            vb = self.ensure(b, "plain", self.dt, node.name) if attempt else b
            if attempt == 2 and y.layout == "strided":
                y = self.new_value(out_shape, "plain")
            views = [self._matrix_view(v, len(bshape)) for v in (va, vb, y)]
            if any(vw is None for vw in views):
                continue
            groups = _batch_groups(bshape, [vw[0] for vw in views if vw is not None])
            if len(groups) <= 2:
                break
        else:  # unreachable: contiguous operands merge into one batch group
            raise GpuLoweringError(f"layer '{node.name}' (MatMul): operands of shapes {a.shape}"
                                   f" x {b.shape} cannot be laid out for the batched GEMM")
        (_, lda, at), (_, ldb, bt), (_, ldc, _) = views  # type: ignore[misc]
        outer = groups[0][1] if len(groups) == 2 else [0, 0, 0]
        inner_n, inner = groups[-1] if groups else (1, [0, 0, 0])
        batch = int(np.prod(bshape, dtype=np.int64))
        ints = [batch, M, Nd, Kd, lda, ldb, ldc, *outer, 0, at, bt, inner_n, *inner]
        self.emit(Launch(node.name, f"bmm_{self.dt}",
                         ((Nd + 31) // 32, (M + 31) // 32, batch), 256,
                         [self.ref(va), self.ref(vb), None, self.ref(y)], ints, [0.0, 0.0]))
        self.bind(node, y)

    def _bmm_output(self, node: Node, shape: tuple[int, ...]) -> Value:
        """Where a batched product goes: when its only reader is a Transpose that keeps the
        last axis (attention's head merge), straight into the transposed layout, so that the
        Transpose and the Reshape after it are views instead of a copy."""
        reader = self._sole_reader(node.outputs[0])
        perm = list(reader.attrs.get("perm", [])) if reader is not None \
            and reader.op == "Transpose" else []
        if len(perm) != len(shape) or perm[-1] != len(shape) - 1:
            return self.new_value(shape, "plain")
        final = self.new_value(tuple(shape[p] for p in perm), "plain")
        strides = [0] * len(shape)
        for i, p in enumerate(perm):
            strides[p] = final.strides()[i]
        return Value(final.buf, shape, "strided", final.dtype, final.offset,
                     custom=tuple(strides))

    def _matrix_view(self, v: Value, nbatch: int) -> tuple[list[int], int, int] | None:
        """How ``bmm`` reads (or writes) ``v`` in place: its strides over the product's
        ``nbatch`` batch axes (0 where broadcast), its leading dimension and whether it is
        transposed; None when neither matrix axis is contiguous."""
        if v.dtype != self.dt or v.layout == "nhwc":
            return None
        st, shape = v.strides(), v.shape
        batch = [0] * (nbatch - len(shape) + 2) + [
            s if d != 1 else 0 for d, s in zip(shape[:-2], st[:-2])]
        rows, cols = st[-2], st[-1]
        if cols == 1 or shape[-1] == 1:
            return batch, rows, 0
        if rows == 1 or shape[-2] == 1:
            return batch, cols, 1
        return None

    # ----- element-wise (deferred, fused) ---------------------------------------------------
    def lazy(self, t: Tensor | None, node: Node, raw: bool = False) -> Value | Lazy:
        """``t`` for a reader that can extend a deferred chain: the chain itself when this is
        its only reader (so nothing is computed twice), else the value in memory."""
        if t is not None and not isinstance(t, Constant) and t not in self.graph.outputs:
            v = self.values.get(t.name)
            if isinstance(v, Lazy) and len({id(c) for c in t.consumers}) == 1:
                return v
        return self.value(t, node, raw)

    def _leaf(self, v: Value, shape: tuple[int, ...], layer: str) -> Leaf:
        """``v`` (compute dtype, any strides) broadcast to ``shape`` as an expression input."""
        v = self.ensure(v, None, self.dt, layer, keep_strided=True)
        pad = len(shape) - len(v.shape)
        strides = [0] * pad + [st if d != 1 else 0 for st, d in zip(v.strides(), v.shape)]
        return Leaf(Value(v.buf, shape, "strided", v.dtype, v.offset, v.cs, tuple(strides)))

    def _broadcast(self, e: Leaf | Op, shape: tuple[int, ...], layer: str) -> Leaf | Op:
        if isinstance(e, Leaf):
            return self._leaf(e.value, shape, layer)
        return Op(e.code, tuple(self._broadcast(x, shape, layer) for x in e.args), e.imm)

    def operand(self, t: Tensor | None, node: Node, shape: tuple[int, ...]) -> Leaf | Op | float:
        """An element-wise layer's input broadcast to its output ``shape``: an immediate for a
        scalar constant, the producer's deferred chain, or a leaf reading memory."""
        if isinstance(t, Constant) and t.values.size == 1 and t.values.dtype.kind == "f":
            return float(t.values.reshape(-1)[0])
        v = self.lazy(t, node)
        if isinstance(v, Lazy):
            return v.root if v.shape == shape else self._broadcast(v.root, shape, node.name)
        return self._leaf(v, shape, node.name)

    def _layout_of(self, node: Node, shape: tuple[int, ...]) -> str:
        """NHWC when a full-size input is NHWC (the chain then reads and writes in order)."""
        if len(shape) != 4:
            return "plain"
        for t in node.inputs:
            v = self.values.get(t.name) if t is not None else None
            if v is not None and v.layout == "nhwc" and v.shape == shape:
                return "nhwc"
        return "plain"

    def _apply(self, code: int, args: list[Leaf | Op | float], shape: tuple[int, ...],
               layer: str, imm: tuple[float, float] = (0.0, 0.0)) -> Leaf | Op:
        """One instruction over ``args``; a scalar becomes an immediate. Chains longer than the
        kernel takes are cut: the operands are computed into memory first."""
        if code >= 32:  # unary
            x = args[0]
            assert not isinstance(x, float), layer
            op = Op(code, (x,), imm)
        else:
            x, y = args
            if isinstance(x, float) and isinstance(y, float):
                raise GpuLoweringError(f"layer '{layer}': constant expression not folded")
            if isinstance(y, float):
                assert not isinstance(x, float)
                op = Op(code + 8, (x,), (y, 0.0))
            elif isinstance(x, float):
                op = Op(code + 16, (y,), (x, 0.0))
            else:
                op = Op(code, (x, y))
        leaves, ops = _linearise(op)
        if len(leaves) > FUSED_IN or len(ops) > FUSED_OPS:
            cut = [a if isinstance(a, Leaf) else
                   self._leaf(self.materialise(Lazy(shape, a, "plain", self.dt), layer),
                              shape, layer) for a in op.args]
            op = Op(op.code, tuple(cut), op.imm)
        return op

    def _define(self, node: Node, root: Leaf | Op, shape: tuple[int, ...]) -> None:
        self.values[node.outputs[0].name] = Lazy(shape, root, self._layout_of(node, shape),
                                                 self.dt)

    def materialise(self, lz: Lazy, layer: str, dst: Value | None = None,
                    dst_strides: list[int] | None = None) -> Value:
        """Emit a deferred chain as one kernel into ``dst`` (default: a new buffer)."""
        if dst is not None and dst.dtype != self.dt:  # e.g. an INT8 concat: quantising copy
            tmp = self.materialise(lz, layer)
            self.copy(tmp, dst, layer, list(lz.shape), None, dst_strides)
            return dst
        y = dst if dst is not None else self.new_value(lz.shape, lz.layout)
        ys = list(dst_strides if dst_strides is not None else y.strides())
        if isinstance(lz.root, Leaf):  # a view only: one strided copy
            self.copy(lz.root.value, y, layer, list(lz.shape), None, ys)
            return y
        leaves, ops = _linearise(lz.root)
        dims, strides = _loop_dims(list(lz.shape), [ys] + [list(v.strides()) for v in leaves],
                                   layer)
        pad = [0] * (MAXR - len(dims))
        desc = dims + pad + [x for st in strides for x in st + pad]
        desc += [x for o in ops for x in o]
        n = int(np.prod(dims))
        self.emit(Launch(layer, f"fused_{self.dt}", _grid1d(n), 256,
                         [self.weight(np.asarray(desc, np.int32)), self.ref(y),
                          *(self.ref(v) for v in leaves)], [len(dims), len(leaves), len(ops)]))
        return y

    def _elementwise_binary(self, node: Node) -> None:
        ins = [t for t in node.inputs if t is not None]
        if len(ins) == 1:  # a one-input Sum / Max / Min is its input
            self.values[node.outputs[0].name] = self.lazy(ins[0], node)
            return
        op = BINARY_OPS["Add" if node.op == "Sum" else node.op]
        shape = self.out_shape(node)
        root = self.operand(ins[0], node, shape)
        for t in ins[1:]:  # variadic Sum / Max / Min: a chain
            root = self._apply(op, [root, self.operand(t, node, shape)], shape, node.name)
        assert not isinstance(root, float)
        self._define(node, root, shape)

    op_Add = op_Sub = op_Mul = op_Div = op_Pow = _elementwise_binary
    op_Max = op_Min = op_Sum = _elementwise_binary

    def _op_unary(self, node: Node) -> None:
        act = self._activation(node)
        if act is None:
            alpha = float(node.attrs.get("alpha", 1.0)) if node.op == "Elu" else 0.0
            act = (UNARY_OPS[node.op], alpha, 0.0)
        shape = self.out_shape(node)
        x = self.operand(node.input(0), node, shape)
        if isinstance(x, float):
            raise GpuLoweringError(f"layer '{node.name}' ({node.op}): constant input not folded")
        self._define(node, self._apply(32 + ACT[act[0]], [x], shape, node.name,
                                       (act[1], act[2])), shape)

    op_Relu = op_Sigmoid = op_Tanh = op_LeakyRelu = op_HardSigmoid = op_HardSwish = _op_unary
    op_Erf = op_Exp = op_Sqrt = op_Reciprocal = op_Neg = op_Abs = op_Elu = _op_unary
    op_Softplus = op_Mish = op_Log = op_Gelu = op_Clip = _op_unary

    def op_BatchNormalization(self, node: Node) -> None:
        """Inference BatchNormalization (when not folded into a convolution): x * s + b."""
        if int(node.attrs.get("training_mode", 0)) or len(node.outputs) > 1:
            raise GpuLoweringError(f"layer '{node.name}' (BatchNormalization): training mode "
                                   "(batch statistics, running mean / var) unsupported")
        scale, b, mean, var = (_const(node, i) for i in range(1, 5))
        if scale is None or b is None or mean is None or var is None:
            raise GpuLoweringError(f"layer '{node.name}': BatchNormalization needs constants")
        eps = float(node.attrs.get("epsilon", 1e-5))
        s = scale / np.sqrt(var + eps)
        shape = self.out_shape(node)
        per_channel = (-1,) + (1,) * (len(shape) - 2)
        x = self.operand(node.input(0), node, shape)
        root = self._apply(BINARY_OPS["Mul"], [x, self._leaf(
            self.const_value(s.reshape(per_channel)), shape, node.name)], shape, node.name)
        root = self._apply(BINARY_OPS["Add"], [root, self._leaf(
            self.const_value((b - mean * s).reshape(per_channel)), shape, node.name)], shape,
            node.name)
        self._define(node, root, shape)

    # ----- pooling -------------------------------------------------------------------------
    def _pool(self, node: Node, is_max: bool) -> None:
        x = self.conv_input(self.value(node.input(0), node), node.name, align=1)
        if len(node.outputs) > 1:  # the importer keeps it only when read or a graph output
            raise GpuLoweringError(f"layer '{node.name}' (MaxPool): Indices output unsupported")
        N, C, H, W = x.shape
        out = self.out_shape(node)
        k = list(node.attrs["kernel_shape"])
        st = list(node.attrs.get("strides", [1, 1]))
        pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
        dil = list(node.attrs.get("dilations", [1, 1]))
        y = self.out_nhwc(node.outputs[0], out)  # a Concat's channel slice when one awaits it
        xcs, ycs = x.cs or C, y.cs or out[1]
        ints = [N, H, W, C, out[2], out[3], k[0], k[1], st[0], st[1], pads[0], pads[1],
                dil[0], dil[1], int(is_max), int(node.attrs.get("count_include_pad", 0)),
                pads[2], pads[3], xcs, ycs]
        # 16-byte vectors: channels, pixel strides and element offsets all multiples of 8
        x8 = self.dt == "f16" and all(v % 8 == 0 for v in (C, xcs, ycs, x.offset, y.offset))
        n = int(np.prod(out)) // (8 if x8 else 1)
        self.emit(Launch(node.name, f"pool2d_{'x8_' if x8 else ''}{self.dt}", _grid1d(n), 256,
                         [self.ref(x), self.ref(y)], ints))
        self.bind(node, y)

    def op_MaxPool(self, node: Node) -> None:
        self._pool(node, True)

    def op_AveragePool(self, node: Node) -> None:
        self._pool(node, False)

    def op_GlobalAveragePool(self, node: Node) -> None:
        x = self.ensure(self.value(node.input(0), node), "nhwc", self.dt, node.name)
        N, C, H, W = x.shape
        y = self.new_value((N, C, 1, 1), "nhwc")
        self.emit(Launch(node.name, f"global_avgpool_{self.dt}", _grid1d(N * C), 256,
                         [self.ref(x), self.ref(y)], [N, H * W, C]))
        self.bind(node, y)

    def op_GlobalMaxPool(self, node: Node) -> None:
        x = self.ensure(self.value(node.input(0), node), "nhwc", self.dt, node.name)
        N, C, H, W = x.shape
        y = self.new_value((N, C, 1, 1), "nhwc")
        ints = [N, H, W, C, 1, 1, H, W, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, C, C]  # dense x, y
        self.emit(Launch(node.name, f"pool2d_{self.dt}", _grid1d(N * C), 256,
                         [self.ref(x), self.ref(y)], ints))
        self.bind(node, y)

    def op_ReduceMean(self, node: Node) -> None:
        x = self.value(node.input(0), node)
        axes = _const(node, 1)
        axes_l = sorted(int(a) % len(x.shape) for a in (axes.reshape(-1) if axes is not None
                                                        else range(len(x.shape))))
        keep = int(node.attrs.get("keepdims", 1))
        if len(x.shape) == 4 and axes_l == [2, 3] and keep:
            self.op_GlobalAveragePool(node)
            return
        if axes_l != [len(x.shape) - 1]:
            raise GpuLoweringError(f"layer '{node.name}' (ReduceMean): only the last axis or "
                                   "H,W are supported on the GPU")
        x = self.ensure(x, "plain", self.dt, node.name)
        L = x.shape[-1]
        rows = x.size // L
        y = self.new_value(self.out_shape(node), "plain")
        self.emit(Launch(node.name, f"mean_lastdim_{self.dt}", (rows, 1, 1), 256,
                         [self.ref(x), self.ref(y)], [rows, L]))
        self.bind(node, y)

    # ----- normalisation -------------------------------------------------------------------
    def op_Softmax(self, node: Node) -> None:
        x, scale = self._scaled(node.input(0), node)
        x = self.ensure(x, "plain", self.dt, node.name)
        axis = int(node.attrs.get("axis", -1)) % len(x.shape)
        if any(d != 1 for d in x.shape[axis + 1:]):
            raise GpuLoweringError(f"layer '{node.name}' (Softmax): only the last axis is "
                                   "supported on the GPU")
        L = x.shape[axis]
        rows = x.size // L
        y = self.new_value(x.shape, "plain")
        self.emit(Launch(node.name, f"softmax_lastdim_{self.dt}", (rows, 1, 1), 256,
                         [self.ref(x), self.ref(y)], [rows, L], [scale]))
        self.bind(node, y)

    def _scaled(self, t: Tensor | None, node: Node) -> tuple[Value, float]:
        """``t`` as (value, factor): a deferred multiplication or division by a constant
        (attention's 1/sqrt(d) before its softmax) is left to the reader, not run as a kernel."""
        x = self.lazy(t, node)
        if isinstance(x, Lazy):
            root = x.root
            if isinstance(root, Op) and len(root.args) == 1 and isinstance(root.args[0], Leaf):
                mul, div = BINARY_OPS["Mul"], BINARY_OPS["Div"]
                if root.code in (8 + mul, 16 + mul):
                    return root.args[0].value, root.imm[0]
                if root.code == 8 + div and root.imm[0] != 0.0:
                    return root.args[0].value, 1.0 / root.imm[0]
            x = self.value(t, node)
        return x, 1.0

    def op_LayerNormalization(self, node: Node) -> None:
        x = self.ensure(self.value(node.input(0), node), "plain", self.dt, node.name)
        axis = int(node.attrs.get("axis", -1)) % len(x.shape)
        if axis != len(x.shape) - 1:
            raise GpuLoweringError(f"layer '{node.name}' (LayerNormalization): only the last "
                                   "axis is supported on the GPU")
        if len([t for t in node.outputs if t.consumers or t in self.graph.outputs]) > 1:
            raise GpuLoweringError(f"layer '{node.name}': Mean/InvStdDev outputs unsupported")
        gamma, beta = _const(node, 1), _const(node, 2)
        L = x.shape[-1]
        rows = x.size // L
        y = self.new_value(x.shape, "plain")
        ptrs = [self.ref(x), self.ref(y),
                self.weight(gamma.astype(np.float32)) if gamma is not None else None,
                self.weight(beta.astype(np.float32)) if beta is not None else None]
        self.emit(Launch(node.name, f"layernorm_lastdim_{self.dt}", (rows, 1, 1), 256, ptrs,
                         [rows, L], [float(node.attrs.get("epsilon", 1e-5))]))
        self.bind(node, y)

    # ----- shape and data movement ---------------------------------------------------------
    def _alias(self, node: Node) -> None:
        x = self.value(node.input(0), node)
        if isinstance(node.input(0), Constant):
            raise GpuLoweringError(f"layer '{node.name}' ({node.op}): constant input not folded")
        out = self.out_shape(node)
        if x.layout == "nhwc" and len(out) == 5 and out[0] == x.shape[0] \
                and out[3:] == x.shape[2:] and out[1] * out[2] == x.shape[1]:
            # (N, a*b, H, W) -> (N, a, b, H, W) (a detect head): a view of the NHWC data
            n_s, _, h_s, w_s = x.strides()
            self.bind(node, Value(x.buf, out, "strided", x.dtype, x.offset, x.cs,
                                  (n_s, out[2], 1, h_s, w_s)))
            return
        x = self.ensure(x, "plain", None, node.name)
        self.bind(node, Value(x.buf, self.out_shape(node), "plain", x.dtype, x.offset))

    op_Reshape = op_Flatten = op_Squeeze = op_Unsqueeze = op_Identity = _alias

    def op_Dropout(self, node: Node) -> None:
        if len(node.outputs) > 1:
            raise GpuLoweringError(f"layer '{node.name}' (Dropout): mask output unsupported")
        self._alias(node)

    def op_Cast(self, node: Node) -> None:
        to = node.attrs.get("to")
        x = self.value(node.input(0), node)
        if to not in (1, 10, "float32", "float16", "float"):
            raise GpuLoweringError(f"layer '{node.name}' (Cast): only casts between float "
                                   "types run on the GPU")
        self.bind(node, x)  # inside a segment every float is the compute precision

    def _qdq_scale(self, node: Node) -> float:
        """The per-tensor scale of a Q/DQ layer; symmetric INT8 only (zero point 0), as the
        INT8 kernels and TensorRT take it."""
        scale, zp = node.input(1), node.input(2)
        if not isinstance(scale, Constant) or scale.values.size != 1:
            raise GpuLoweringError(f"layer '{node.name}' ({node.op}): needs one constant "
                                   "per-tensor scale on the GPU")
        zero = zp is None or (isinstance(zp, Constant) and not np.any(zp.values))
        int8 = zp is not None and zp.dtype == "int8" or \
            node.attrs.get("output_dtype") == 3  # TensorProto.INT8
        if node.op == "QuantizeLinear" and not (zero and int8):
            raise GpuLoweringError(f"layer '{node.name}' (QuantizeLinear): only INT8 with zero "
                                   "point 0 runs on the GPU (symmetric, as TensorRT)")
        if not zero:
            raise GpuLoweringError(f"layer '{node.name}' (DequantizeLinear): only zero point 0 "
                                   "runs on the GPU")
        return float(scale.values.reshape(-1)[0])

    def op_QuantizeLinear(self, node: Node) -> None:
        x = self.value(node.input(0), node)
        if node.outputs[0] in self.graph.outputs:
            raise GpuLoweringError(f"layer '{node.name}' (QuantizeLinear): an INT8 graph output "
                                   "is not supported on the GPU")
        self.bind(node, self.ensure(x, None, "i8", node.name, scale=self._qdq_scale(node)))

    def op_DequantizeLinear(self, node: Node) -> None:
        scale = self._qdq_scale(node)
        t = node.input(0)
        if isinstance(t, Constant):  # weights: folded here (the importer's passes usually do)
            real = (t.values.astype(np.float32) * scale).astype(NP_DTYPE[self.dt])
            self.bind(node, self.value(Constant(node.outputs[0].name, real), node))
            return
        v = self.value(t, node, raw=True)
        if v.dtype != "i8":
            raise GpuLoweringError(f"layer '{node.name}' (DequantizeLinear): input "
                                   f"'{t.name if t else ''}' is not INT8")
        as_stored = Value(v.buf, v.shape, v.layout, "i8", v.offset, v.cs, v.custom, scale)
        self.bind(node, self.ensure(as_stored, None, self.dt, node.name))

    def op_Transpose(self, node: Node) -> None:
        x = self.lazy(node.input(0), node)
        perm = list(node.attrs.get("perm", list(range(len(x.shape)))[::-1]))
        out_shape = self.out_shape(node)
        if isinstance(x, Value) and x.layout == "nhwc" and perm == [0, 2, 3, 1] \
                and x.cs in (0, x.shape[1]):
            self.bind(node, Value(x.buf, out_shape, "plain", x.dtype, x.offset))  # free
            return

        def transposed(v: Value) -> Value:  # a view: whoever needs it contiguous copies it once
            vs = v.strides()
            return Value(v.buf, out_shape, "strided", v.dtype, v.offset, v.cs,
                         tuple(vs[p] for p in perm))
        self.values[node.outputs[0].name] = _view(x, out_shape, transposed)

    def op_Concat(self, node: Node) -> None:
        # raw: an INT8 input written in place must be recognised as such
        ins = [self.lazy(t, node, raw=True) for t in node.inputs if t is not None]
        out_shape = self.out_shape(node)
        axis = int(node.attrs["axis"]) % len(out_shape)
        layout = "nhwc" if len(out_shape) == 4 and all(v.layout == "nhwc" for v in ins) \
            else "plain"

        def put(v: Value | Lazy, part: Value, strides: list[int]) -> None:
            if isinstance(v, Lazy):  # a deferred chain computes straight into its slice
                self.materialise(v, node.name, part, strides)
            else:
                if v.buf.kind != "weight":
                    v = self.ensure(v, None, self.dt, node.name, keep_strided=True)
                self.copy(v, part, node.name, list(v.shape), None, strides)

        planned = any(slot[0] is node for slot in self.concat_slot.values())
        if planned:
            y = self._concat_value(node)
            ys = y.strides()
            for t, v in zip([t for t in node.inputs if t is not None], ins):
                slot = self.concat_slot.get(t.name)
                in_place = isinstance(v, Value) and slot is not None and slot[0] is node \
                    and v.buf is y.buf and v.offset == y.offset + slot[1]
                if not in_place:  # produced by a kernel that cannot write a channel slice
                    off = slot[1] if slot is not None and slot[0] is node else \
                        sum(int(u.static_shape()[1]) for u in node.inputs[:list(
                            node.inputs).index(t)] if u is not None)
                    put(v, Value(y.buf, y.shape, "nhwc", y.dtype, y.offset + off, y.cs,
                                 scale=y.scale), ys)
            self.bind(node, y)
            return
        y = self.new_value(out_shape, layout)
        ys = y.strides()
        start = 0
        for v in ins:
            put(v, Value(y.buf, y.shape, y.layout, y.dtype, y.offset + start * ys[axis], y.cs), ys)
            start += v.shape[axis]
        self.bind(node, y)

    def _slice(self, node: Node, x: Value | Lazy, starts: list[int], steps: list[int],
               out_shape: tuple[int, ...], i: int) -> None:
        def sliced(v: Value) -> Value:
            vs = v.strides()
            off = v.offset + sum(s * st for s, st in zip(starts, vs))
            return Value(v.buf, out_shape, "strided", v.dtype, off, v.cs,
                         tuple(st * s for st, s in zip(vs, steps)))
        self.values[node.outputs[i].name] = _view(x, out_shape, sliced)

    def op_Slice(self, node: Node) -> None:
        x = self.lazy(node.input(0), node)
        rank = len(x.shape)
        starts, ends = _const(node, 1), _const(node, 2)
        axes, steps = _const(node, 3), _const(node, 4)
        if starts is None or ends is None or (node.input(3) is not None and axes is None) or (
                node.input(4) is not None and steps is None):
            raise GpuLoweringError(f"layer '{node.name}' (Slice): run-time bounds unsupported")
        axes_l = [int(a) % rank for a in (axes if axes is not None else range(len(starts)))]
        steps_l = [int(s) for s in (steps if steps is not None else [1] * len(starts))]
        st_all, sp_all = [0] * rank, [1] * rank
        for a, s0, e0, sp in zip(axes_l, starts, ends, steps_l):
            dim = x.shape[a]
            s0, e0 = int(s0), int(e0)
            s0 = s0 + dim if s0 < 0 else s0
            if sp > 0:
                s0 = min(max(s0, 0), dim)
            else:
                s0 = min(max(s0, -1), dim - 1)
            st_all[a], sp_all[a] = s0, sp
        self._slice(node, x, st_all, sp_all, self.out_shape(node), 0)

    def op_Split(self, node: Node) -> None:
        x = self.lazy(node.input(0), node)
        axis = int(node.attrs.get("axis", 0)) % len(x.shape)
        start = 0
        for i, t in enumerate(node.outputs):
            shape = tuple(int(d) for d in t.static_shape())
            st = [0] * len(x.shape)
            st[axis] = start
            self._slice(node, x, st, [1] * len(x.shape), shape, i)
            start += shape[axis]

    def op_Gather(self, node: Node) -> None:
        """Gather with constant indices: a view for a scalar index, one strided copy per index
        for a 1-D one."""
        x = self.value(node.input(0), node)
        idx = _const(node, 1)
        if idx is None or idx.ndim > 1:
            raise GpuLoweringError(f"layer '{node.name}' (Gather): only constant scalar or 1-D "
                                   "indices run on the GPU")
        axis = int(node.attrs.get("axis", 0)) % len(x.shape)
        out_shape = self.out_shape(node)
        xs = x.strides()
        if idx.ndim == 0:  # one index: a view without the axis (attention's q / k / v split)
            i = int(idx) % x.shape[axis]
            self.bind(node, Value(x.buf, out_shape, "strided", x.dtype, x.offset + i * xs[axis],
                                  x.cs, tuple(st for a, st in enumerate(xs) if a != axis)))
            return
        y = self.new_value(out_shape, "plain", x.dtype)
        ys = y.strides()
        rest_shape = [d for a, d in enumerate(x.shape) if a != axis]
        rest_strides = [st for a, st in enumerate(xs) if a != axis]
        for j, i in enumerate(idx.reshape(-1)):
            i = int(i) % x.shape[axis]
            src = Value(x.buf, x.shape, x.layout, x.dtype, x.offset + i * xs[axis], x.cs)
            if idx.ndim == 0:
                dst, dst_strides = y, ys
            else:
                dst = Value(y.buf, y.shape, "plain", y.dtype, y.offset + j * ys[axis])
                dst_strides = [st for a, st in enumerate(ys) if a != axis]
            self.copy(src, dst, node.name, rest_shape, rest_strides, dst_strides)
        self.bind(node, y)

    def op_Resize(self, node: Node) -> None:
        x = self.conv_input(self.value(node.input(0), node), node.name, align=1)  # slices too
        out = self.out_shape(node)
        N, C, H, W = x.shape
        if out[0] != N or out[1] != C:
            raise GpuLoweringError(f"layer '{node.name}' (Resize): only H/W resizing on GPU")
        mode = node.attrs.get("mode", "nearest")
        if mode not in ("nearest", "linear"):
            raise GpuLoweringError(f"layer '{node.name}' (Resize): mode '{mode}' unsupported")
        ctm = {"half_pixel": 0, "asymmetric": 1, "align_corners": 2, "pytorch_half_pixel": 3,
               "tf_half_pixel_for_nn": 0}.get(
            node.attrs.get("coordinate_transformation_mode", "half_pixel"))
        if ctm is None:
            raise GpuLoweringError(f"layer '{node.name}' (Resize): coordinate transformation "
                                   f"'{node.attrs.get('coordinate_transformation_mode')}'")
        nmode = {"round_prefer_floor": 0, "round_prefer_ceil": 1, "floor": 2, "ceil": 3}[
            node.attrs.get("nearest_mode", "round_prefer_floor")]
        scales = _const(node, 2)
        if scales is not None and scales.size == 4:
            sh, sw = float(scales[2]), float(scales[3])
        else:
            sh, sw = out[2] / H, out[3] / W
        y = self.out_nhwc(node.outputs[0], out)  # a Concat's channel slice when one awaits it
        self.emit(Launch(node.name, f"resize_nhwc_{self.dt}", _grid1d(int(np.prod(out))), 256,
                         [self.ref(x), self.ref(y)],
                         [N, H, W, C, out[2], out[3], int(mode == "linear"), ctm, nmode,
                          x.cs or C, y.cs or out[1]],
                         [sh, sw]))
        self.bind(node, y)


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


def lower(graph: Graph, precision: str = "fp16", arch: int = 90,
          choose: TacticChooser | None = None, sm_count: int = 132,
          scales: dict[str, float] | None = None) -> GpuProgram:
    """Lower ``graph`` to GPU launches with planned memory (no GPU needed); INT8 needs
    per-tensor ``scales`` (threshold / 127)."""
    from gpu_kernels.tactics import heuristic

    chooser = choose or (lambda p: heuristic(p, arch, sm_count))
    return Lowering(graph, precision, arch, chooser, scales).run()


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


def describe(program: GpuProgram) -> dict[str, Any]:
    """Summary numbers of a program (kernels, bytes, tactics)."""
    tactics: dict[str, int] = {}
    for ln in program.launches:
        if ln.tactic is not None:
            tactics[ln.tactic.name] = tactics.get(ln.tactic.name, 0) + 1
    return {"kernels": program.kernel_count, "arena_bytes": program.arena_bytes,
            "naive_activation_bytes": program.naive_bytes, "weight_bytes": program.weight_bytes,
            "tactics": tactics}
