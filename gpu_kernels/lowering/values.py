"""The lowering's state and what every handler uses: buffers, values (and views of them), copy
and conversion kernels, deferred element-wise chains made real, and channel-Concat planning.

Pure: no GPU needed, so plans, peak activation bytes and unsupported-layer errors are testable
in CI. ``devices/gpu.py`` resolves kernel names to functions, allocates and captures the launches
in a CUDA graph.

Views: Transpose, Slice / Split and a Reshape that splits NHWC channels make "strided" values
(no kernel); element-wise chains and copies read any strides, everything else materialises a
view once. A Concat along channels lets the convolutions producing its inputs write straight
into their channel slice of its buffer (zero-copy); Concats nested as prefixes of a wider one
(DenseNet's dense blocks, :mod:`partitioner.passes.concat_chains`) are views of the widest
one's buffer, so each input is written once however many of them take it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpu_kernels.lowering.int8 import Int8Plan
from gpu_kernels.lowering.program import (
    ALIAS_OPS,
    DTYPE_BYTES,
    FUSED_V,
    IMM_RIGHT,
    INDEX_DTYPES,
    MAXR,
    NP_DTYPE,
    SELECT,
    UNARY,
    GpuLoweringError,
    GpuProgram,
    Launch,
    Lazy,
    Leaf,
    Op,
    Ref,
    TacticChooser,
    Value,
    VBuf,
    grid1d,
    plan_memory,
    reshaped,
)
from gpu_kernels.lowering.registry import (
    PRECISIONS,
    handler_for,
    no_kernel,
    supports,
    unknown_precision,
)
from partitioner.errors import TandemError
from partitioner.ir import Constant, Graph, Node, Tensor
from partitioner.passes.concat_chains import ConcatChain, concat_chains
from partitioner.passes.fusion import (
    Epilogue,
    SqueezeExcitation,
    epilogue,
    se_pooled_by,
    squeeze_excitation,
)


def linearise(root: Leaf | Op) -> tuple[list[Value], list[list[int]]]:
    """An expression tree as the ``fused`` kernel's register program: distinct leaves first
    (one register each), then one instruction per distinct operation (common subexpressions,
    e.g. the x of x * sigmoid(x), computed once)."""
    leaves, ops, _, _, _ = linearise_pieces([root])
    return leaves, ops


def linearise_pieces(roots: list[Leaf | Op]) -> tuple[
        list[Value], list[list[int]], list[int], list[set[int]], list[int]]:
    """Several expressions as one register program: their distinct leaves shared (one register
    each), then each root's instructions in turn, consecutive (common subexpressions shared
    within a root only: the kernel runs only the instructions of the pieces an element is
    in). Returns (leaves, ops, each root's result register, each root's leaf registers, the
    op count after each root's instructions)."""
    leaves: list[Value] = []
    leaf_regs: dict[Any, int] = {}
    ops: list[list[int]] = []
    results: list[int] = []
    used: list[set[int]] = []
    op_ends: list[int] = []

    def key_of(v: Value) -> tuple[Any, ...]:
        where = ("w", v.buf.offset) if v.buf.kind == "weight" else ("a", id(v.buf))
        return where + (v.offset, v.custom, v.dtype)

    def visit(e: Leaf | Op, regs: dict[Any, int], mine: set[int]) -> tuple[Any, int]:
        """Registers of ``e`` (``regs``: this root's operations; ``mine``: its leaves)."""
        if isinstance(e, Leaf):
            k: Any = key_of(e.value)
            if k not in leaf_regs:
                leaf_regs[k] = len(leaves)
                leaves.append(e.value)
            mine.add(leaf_regs[k])
            return k, leaf_regs[k]
        args = [visit(x, regs, mine) for x in e.args]
        k = (e.code, tuple(a[0] for a in args), e.imm)
        if k not in regs:
            bits = np.asarray(e.imm, np.float32).view(np.int32)
            r = [a[1] for a in args] + [0, 0]
            if IMM_RIGHT <= e.code < SELECT or e.code >= UNARY:  # immediate(s) in b (and c)
                r = [r[0], int(bits[0]), int(bits[1])]
            ops.append([e.code] + r[:3])
            regs[k] = -len(ops)  # resolved below, once the leaf count is known
        return k, regs[k]

    for root in roots:
        used.append(set())
        results.append(visit(root, {}, used[-1])[1])
        op_ends.append(len(ops))
    nin = len(leaves)
    # registers: leaves 0..nin-1, op j -> nin + j (ops were numbered -1, -2, ... as found)
    for o in ops:
        regs_in = 2 if o[0] < IMM_RIGHT else 3 if o[0] == SELECT else 1
        o[1:1 + regs_in] = [x if x >= 0 else nin - x - 1 for x in o[1:1 + regs_in]]
    return leaves, ops, [x if x >= 0 else nin - x - 1 for x in results], used, op_ends


def loop_dims(shape: list[int], strides: list[list[int]], layer: str) -> tuple[
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



def is_dense(v: Value) -> bool:
    """Whether a view's strides are those of a contiguous row-major tensor of its shape."""
    dense = Value(v.buf, v.shape, "plain", v.dtype).strides()
    return all(d == 1 or s == c for d, s, c in zip(v.shape, v.strides(), dense))


class Lowering:
    """One graph being lowered: its values, buffers, weights and launches so far."""

    def __init__(self, graph: Graph, precision: str, arch: int, choose: TacticChooser,
                 scales: dict[str, float] | None = None, sm_count: int = 132) -> None:
        if precision not in PRECISIONS:
            raise GpuLoweringError(unknown_precision(precision))
        if precision == "int8" and not scales:
            raise GpuLoweringError(
                "GPU precision 'int8' needs per-tensor scales (calibrate, or a QAT model's Q/DQ "
                "scales)"
            )
        self.graph = graph
        self.precision = precision
        self.dt = "f32" if precision == "fp32" else "f16"  # INT8 runs everything else in FP16
        self.scales = {k: float(v) for k, v in (scales or {}).items() if v > 0} \
            if precision == "int8" else {}
        self.arch = arch
        self.sm_count = sm_count  # the GPU's SMs: grids of memory-bound kernels fill them
        self.choose = choose
        self.launches: list[Launch] = []
        self.buffers: list[VBuf] = []
        self.values: dict[str, Value | Lazy] = {}
        self.weights: list[tuple[int, np.ndarray]] = []
        self.weight_bytes = 0
        self._weight_cache: dict[tuple[int, str], Ref] = {}
        self.fused: set[str] = set()
        self.converted: dict[tuple[Any, ...], Value] = {}
        # zero-copy channel concat: producer output tensor -> (its chain's widest Concat,
        # channel offset); the chain of each channel Concat; each chain's buffer; the
        # (widest Concat, channel offset) slices already holding their input
        self.concat_slot: dict[str, tuple[Node, int]] = {}
        self.concat_chain: dict[str, ConcatChain] = {}
        self.concat_values: dict[str, Value] = {}
        self.concat_filled: set[tuple[str, int]] = set()
        # where a tensor is written in place (destination()): by tensor name, None for none
        self.dests: dict[str, Value | None] = {}
        self.concat_bufs: dict[str, Value] = {}  # non-channel Concats' buffers, by name
        # a zero Pad folded into the Conv reading it: Conv name -> extra (top, left) padding
        self.pad_fold: dict[str, tuple[int, int]] = {}
        self.int8 = Int8Plan(graph, self.scales, arch, self.concat_slot)

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
        if dtype == "f16" and array.dtype.kind == "f" and array.size:
            # beyond FP16's range a constant saturates to +-65504, as TensorRT clamps weights
            # (transformers' attention masks fill with float32's minimum); infinities stay.
            # Checked first: the clip is three passes and two temporaries over the array
            # (seconds for a VGG's 400 MB of FC weights), and nearly every weight is in range
            finite = np.finfo(np.float16).max
            if np.nanmax(array) > finite or np.nanmin(array) < -finite:
                array = np.where(np.isinf(array), array, np.clip(array, -finite, finite))
        # one pass: a transposed view (a GEMM's W^T) is converted and made contiguous at once
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
        if isinstance(v, Lazy):  # a deferred chain is computed once, for every reader,
            # straight into its Concat's slice where one awaits it
            dst = self.out_nhwc(t, v.shape) if t.name in self.concat_slot \
                else self.destination(t)
            v = self.values[t.name] = self.materialise(v, node.name, dst)
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
        dims, (ds, ss) = loop_dims(shape, [ds, ss], layer)
        pad = [0] * (MAXR - len(dims))
        ints = [len(dims)] + dims + pad + ss + pad + ds + pad
        n = int(np.prod(dims))
        factor = (src.scale if src.dtype == "i8" else 1.0) / (
            dst.scale if dst.dtype == "i8" else 1.0)  # (de)quantise on the way
        self.emit(Launch(layer, f"copy_{src.dtype}_{dst.dtype}", grid1d(n), 256,
                         [self.ref(src), self.ref(dst)], ints, [factor]))

    def ensure(self, v: Value, layout: str | None, dtype: str | None, layer: str,
               keep_strided: bool = False, scale: float = 0.0) -> Value:
        """``v`` in the wanted layout / dtype, converted by one copy kernel when it differs.

        Views (layout "strided": transposes, slices) are materialised here, once, unless the
        caller reads arbitrary strides itself (``keep_strided``: binary ops, copies). INT8 needs
        the ``scale`` to quantise with.
        """
        if v.layout == "strided" and is_dense(v):  # e.g. a transpose of a transposed write
            v = Value(v.buf, v.shape, "plain", v.dtype, v.offset, scale=v.scale)
        if keep_strided and layout is None and (dtype or v.dtype) == v.dtype \
                and v.layout in ("strided", "nhwc"):
            return v  # NHWC channel slices too (a Concat's inputs, a chain's views)
        if v.layout == "strided":
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
        if key not in self.converted:  # convert once, however many readers need it
            if dtype == "i8" and scale <= 0:
                raise GpuLoweringError(f"layer '{layer}': quantising to INT8 needs a scale")
            out = self.new_value(v.shape, layout, dtype)
            out.scale = scale if dtype == "i8" else 0.0
            self.copy(v, out, layer)
            self.converted[key] = out
        return self.converted[key]

    # ----- graph ---------------------------------------------------------------------------
    def run(self) -> GpuProgram:
        g = self.graph
        inputs = {}
        for t in g.inputs:
            shape = tuple(int(d) for d in t.static_shape())
            np_dt = np.dtype(t.dtype or "float32")
            index = np_dt in INDEX_DTYPES and t.consumers and all(
                n.op == "Gather" and n.input(1) is t and t not in n.inputs[:1]
                for n in t.consumers)
            if np_dt.kind not in "fb" and not index:
                raise GpuLoweringError(f"input '{t.name}': dtype {np_dt} is not supported on "
                                       "GPU (integer inputs only as Gather indices)")
            buf = self.new_buf(int(np.prod(shape)) * np_dt.itemsize, "input", t.name)
            inputs[t.name] = (buf, shape, np_dt)
            if np_dt.kind == "b":
                # a mask computed on the host (integer shape math: attention masks): its 0 / 1
                # bytes are read as int8 with scale 1 and widened once to the compute precision,
                # the 0 / 1 form every logic op and Where reads inside a segment
                raw = Value(buf, shape, "plain", "i8", scale=1.0)
                self.values[t.name] = self.ensure(raw, "plain", self.dt, t.name)
                continue
            dt = INDEX_DTYPES[np_dt] if index else "f16" if np_dt == np.float16 else "f32"
            self.values[t.name] = Value(buf, shape, "plain", dt)
        self._plan_concats()
        for node in g.topological_order():
            if node.name in self.fused:
                continue
            handler = handler_for(node)
            if handler is None:
                raise GpuLoweringError(no_kernel(node))
            verdict = supports(node, self.arch, self.precision)
            if not verdict:
                raise GpuLoweringError(f"layer '{node.name}' ({node.op}): {verdict.reason}")
            try:
                handler.lower(self, node)
            except TandemError:
                raise
            except (ValueError, IndexError, KeyError, TypeError) as err:
                raise GpuLoweringError(
                    f"layer '{node.name}' ({node.op}): cannot lower to GPU kernels ({err})"
                ) from err
        outputs = {}
        for t in g.outputs:
            np_dt = np.dtype(t.dtype or "float32")
            if np_dt.kind == "b":  # 0 / 1 in the compute precision, leaving as bool's bytes
                v = self.value(t, Node(f"output:{t.name}", "Output"))
                out = Value(self.new_buf(v.size, "output", t.name), v.shape, "plain", "i8",
                            scale=1.0)
                self.copy(v, out, f"output:{t.name}")
                outputs[t.name] = (out.buf, out.shape, np_dt)
                continue
            if np_dt.kind != "f":
                raise GpuLoweringError(f"output '{t.name}': dtype {np_dt} is not supported "
                                       "on the GPU (keep the layer that reads it in the segment)")
            v = self.values.get(t.name)
            out = self._output_value(t, v.shape if v is not None else self.out_shape_of(t))
            if isinstance(v, Lazy):  # read by nobody: the chain writes the output itself
                self.materialise(v, f"output:{t.name}", out)
            elif not (isinstance(v, Value) and v.buf is out.buf and v.offset == out.offset
                      and v.dtype == out.dtype and is_dense(v)):  # else written in place
                self.copy(self.value(t, Node(f"output:{t.name}", "Output")), out,
                          f"output:{t.name}")
            outputs[t.name] = (out.buf, out.shape, np_dt)
        arena, naive = plan_memory(self.buffers)
        return GpuProgram(self.launches, self.buffers, self.weights, self.weight_bytes, inputs,
                          outputs, arena, naive)

    def _output_value(self, t: Tensor, shape: tuple[int, ...]) -> Value:
        """Graph output ``t``'s buffer (plain, in the output's dtype), made once."""
        if self.dests.get(t.name) is None:
            np_dt = np.dtype(t.dtype or "float32")
            dt = "f16" if np_dt == np.float16 else "f32"
            buf = self.new_buf(int(np.prod(shape, dtype=np.int64)) * np_dt.itemsize, "output",
                               t.name)
            self.dests[t.name] = Value(buf, tuple(shape), "plain", dt)
        out = self.dests[t.name]
        assert out is not None
        return out

    def out_shape_of(self, t: Tensor) -> tuple[int, ...]:
        return tuple(int(d) for d in t.static_shape())

    def destination(self, t: Tensor) -> Value | None:
        """Where the producer of ``t`` writes it in place, or None (a buffer of its own): a
        float graph output that nothing reads is its output buffer, in the output's dtype (no
        conversion pass after it); a tensor whose one reader is a Concat (not a channel
        Concat: those have their chains, :meth:`_plan_concats`), or a Reshape-like view
        leading to one, is its slice of that Concat's buffer -- itself the Concat output's
        destination where it has one. YOLO's decoded scales land in the detection output so."""
        if t.name in self.dests:
            return self.dests[t.name]
        self.dests[t.name] = None  # a cycle cannot form (a DAG), but stay safe
        dest = None
        readers = {id(c): c for c in t.consumers}
        if t in self.graph.inputs or not t.is_static:
            pass
        elif t in self.graph.outputs:
            if not readers and np.dtype(t.dtype or "float32").kind == "f" \
                    and list(self.graph.outputs).count(t) == 1:
                dest = self._output_value(t, self.out_shape_of(t))
        elif len(readers) == 1:
            (c,) = readers.values()
            if list(c.inputs).count(t) == 1 and c.outputs[0].is_static:
                if c.op in ALIAS_OPS - {"Dropout"} and c.input(0) is t:
                    whole = self.destination(c.outputs[0])
                    dest = reshaped(whole, self.out_shape_of(t)) if whole is not None else None
                elif c.op == "Concat" and c.name not in self.concat_chain \
                        and "axis" in c.attrs:
                    dest = self._concat_slice(c, t)
        self.dests[t.name] = dest
        return dest

    def concat_buffer(self, concat: Node, layout: str = "plain") -> Value:
        """Where a (non-channel) Concat is written: its output's destination, else a buffer of
        its own (``layout``), made once -- its inputs' producers may have written there."""
        y = self.destination(concat.outputs[0])
        if y is None:
            if concat.name not in self.concat_bufs:
                self.concat_bufs[concat.name] = self.new_value(self.out_shape(concat), layout)
            y = self.concat_bufs[concat.name]
        return y

    def _concat_slice(self, concat: Node, t: Tensor) -> Value:
        """Input ``t``'s slice of a (non-channel) Concat's buffer: the Concat output's
        destination, else a plain buffer of its own made once."""
        y = self.concat_buffer(concat)
        ys = y.strides()
        axis = int(concat.attrs["axis"]) % len(y.shape)
        start = 0
        for u in concat.inputs:
            if u is t:
                break
            start += int(u.static_shape()[axis]) if u is not None else 0
        shape = self.out_shape_of(t)
        return Value(y.buf, shape, "strided", y.dtype, y.offset + start * ys[axis], y.cs,
                     tuple(st if d != 1 else 0 for st, d in zip(ys, shape)), scale=y.scale)

    def _plan_concats(self) -> None:
        """Let producers of channel-Concat inputs write straight into the Concat's buffer: the
        buffer of its chain's widest Concat (:func:`concat_chains`), of which every narrower
        Concat of the chain is a channel-prefix view."""
        self.concat_chain = concat_chains(self.graph)
        for node in self.graph.nodes:
            chain = self.concat_chain.get(node.name)
            if chain is None:
                continue
            ins = list(chain.root.inputs)
            off = 0
            for i, t in enumerate(node.inputs):  # a prefix of the root's: the same offsets
                assert t is not None  # channel_concat made sure
                if ins.count(t) == 1 and t not in self.graph.outputs \
                        and t not in self.graph.inputs and t.name not in self.concat_slot:
                    self.concat_slot[t.name] = (chain.root, off)
                src = _split_source(node, i)
                if src is not None and src not in self.graph.outputs \
                        and src not in self.graph.inputs and src.name not in self.concat_slot:
                    # every output of a channel Split, in order (YOLOv8's C2f): the Split's
                    # input is written into their slices and the outputs are views of it
                    self.concat_slot[src.name] = (chain.root, off)
                off += int(t.static_shape()[1])

    def concat_value(self, root: Node) -> Value:
        """The buffer a channel Concat chain's producers write into (``root``: its widest
        Concat): INT8 (with the Concat output's scale, so each producer requantises into it)
        when the chain is one Concat, every reader takes INT8 and every input comes from an
        INT8 convolution, else the compute precision (a longer chain's views would need each
        their own scale)."""
        if root.name not in self.concat_values:
            t = root.outputs[0]
            int8 = len(self.concat_chain[root.name].members) == 1 and self.int8.wants(t) \
                and all(self.int8.from_conv(u) for u in root.inputs)
            v = self.new_value(self.out_shape(root), "nhwc", "i8" if int8 else None)
            v.scale = self.scales[t.name] if int8 else 0.0
            self.concat_values[root.name] = v
        return self.concat_values[root.name]

    def out_nhwc(self, t: Tensor, shape: tuple[int, ...], int8_ok: bool = False) -> Value:
        """A new NHWC output for tensor ``t``: a channel slice of a Concat when one awaits it,
        INT8 when every reader takes INT8 and the producing kernel can write INT8
        (``int8_ok``)."""
        slot = self.concat_slot.get(t.name)
        if slot is not None:
            cv = self.concat_value(slot[0])
            if cv.dtype == "i8" and not int8_ok:
                return self.new_value(shape, "nhwc")  # lower_concat quantises it into place
            return Value(cv.buf, shape, "nhwc", cv.dtype, cv.offset + slot[1], cv.shape[1],
                         scale=cv.scale)
        if int8_ok and self.int8.wants(t):
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

    def fuse_epilogue(self, node: Node, out_shape: tuple[int, ...]) -> Epilogue:
        """What folds into the epilogue of ``node``'s kernel writing ``out_shape``, as
        :func:`partitioner.passes.fusion.epilogue` decides for the cost model too; its layers
        are marked fused. A residual must already have a value here."""

        def shape_of(t: Tensor) -> tuple[int, ...] | None:
            v = self.values.get(t.name)
            return v.shape if v is not None else None

        ep = epilogue(self.graph, node, out_shape, shape_of)
        self.fused.update(n.name for n, _, _ in ep.layers)
        return ep

    def fuse_squeeze_excitation(self, pool: Node) -> SqueezeExcitation | None:
        """The squeeze-and-excitation block ``pool`` starts, as
        :func:`partitioner.passes.fusion.squeeze_excitation` decides for the cost model too;
        its layers after the pool are marked fused (the SE kernels run them)."""
        se = squeeze_excitation(self.graph, pool)
        if se is not None:
            self.fused.update(n.name for n, _, _ in se.layers)
        return se

    def fuse_se_pool(self, conv: Node, ep: Epilogue) -> SqueezeExcitation | None:
        """The squeeze-and-excitation block whose input the depthwise ``conv`` writes, as
        :func:`partitioner.passes.fusion.se_pooled_by` decides for the cost model too; its pool
        and layers are marked fused (``conv``'s kernel sums, the SE kernel follows it)."""
        se = se_pooled_by(self.graph, conv, ep)
        if se is not None:
            self.fused.add(se.pool.name)
            self.fused.update(n.name for n, _, _ in se.layers)
        return se

    def lazy(self, t: Tensor | None, node: Node, raw: bool = False) -> Value | Lazy:
        """``t`` for a reader that can extend a deferred chain: the chain itself when this is
        its only reader (so nothing is computed twice) or every reader is a Slice / Split view
        (older YOLO exports slice xy, wh and conf apart: each view computes its own elements,
        which costs no more memory traffic than writing the whole once and reading it back),
        else the value in memory."""
        if t is not None and not isinstance(t, Constant) and t not in self.graph.outputs:
            v = self.values.get(t.name)
            readers = {id(c): c for c in t.consumers}.values()
            if isinstance(v, Lazy) and (len(readers) == 1 or all(
                    c.op in ("Slice", "Split") and list(c.inputs).count(t) == 1
                    and c.input(0) is t for c in readers)):
                return v
        return self.value(t, node, raw)

    def leaf(self, v: Value, shape: tuple[int, ...], layer: str) -> Leaf:
        """``v`` (compute dtype, any strides) broadcast to ``shape`` as an expression input."""
        v = self.ensure(v, None, self.dt, layer, keep_strided=True)
        pad = len(shape) - len(v.shape)
        strides = [0] * pad + [st if d != 1 else 0 for st, d in zip(v.strides(), v.shape)]
        return Leaf(Value(v.buf, shape, "strided", v.dtype, v.offset, v.cs, tuple(strides)))


    def materialise(self, lz: Lazy, layer: str, dst: Value | None = None,
                    dst_strides: list[int] | None = None) -> Value:
        """Emit a deferred chain as one kernel into ``dst`` (default: a new buffer)."""
        if dst is not None and dst.dtype not in ("f16", "f32"):  # an INT8 concat: quantising copy
            tmp = self.materialise(lz, layer)
            self.copy(tmp, dst, layer, list(lz.shape), None, dst_strides)
            return dst
        y = dst if dst is not None else self.new_value(lz.shape, lz.layout)
        ys = list(dst_strides if dst_strides is not None else y.strides())
        if isinstance(lz.root, Leaf):  # a view only: one strided copy
            self.copy(lz.root.value, y, layer, list(lz.shape), None, ys)
            return y
        leaves, ops = linearise(lz.root)
        dims, strides = loop_dims(list(lz.shape), [ys] + [list(v.strides()) for v in leaves],
                                   layer)
        pad = [0] * (MAXR - len(dims))
        desc = dims + pad + [x for st in strides for x in st + pad]
        desc += [x for o in ops for x in o]
        n = int(np.prod(dims))
        kernel = f"fused_{self.dt}" if y.dtype == self.dt else f"fused_{self.dt}_{y.dtype}"
        self.emit(Launch(layer, kernel, grid1d((n + FUSED_V - 1) // FUSED_V), 256,
                         [self.weight(np.asarray(desc, np.int32)), self.ref(y),
                          *(self.ref(v) for v in leaves)], [len(dims), len(leaves), len(ops)]))
        return y


def _split_source(concat: Node, i: int) -> Tensor | None:
    """The input of a channel Split whose outputs are, in order, ``concat``'s inputs from
    ``i`` on (each once), else None."""
    t = concat.inputs[i]
    sp = t.producer if t is not None else None
    if sp is None or sp.op != "Split" or sp.outputs[0] is not t:
        return None
    src = sp.inputs[0]
    if src is None or isinstance(src, Constant) or not src.is_static \
            or len(src.static_shape()) != 4 or int(sp.attrs.get("axis", 0)) % 4 != 1:
        return None
    outs = list(sp.outputs)
    run = list(concat.inputs[i:i + len(outs)])
    if run != outs or any(list(concat.inputs).count(o) != 1 for o in outs):
        return None
    return src
