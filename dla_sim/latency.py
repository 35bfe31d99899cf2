"""Analytical DLA latency model, per engine op, from the hardware configuration alone.

For each engine operation (dla.md §4, the NVDLA primer and performance spreadsheet)::

    cycles = max(MAC cycles, SDP cycles, PDP cycles, DRAM cycles, SRAM cycles) + fixed cycles
    seconds = cycles / clock + fixed seconds

- MAC cycles count atomic operations: ``ceil(C / atomic_C) * ceil(K / atomic_K)`` per output
  pixel and kernel tap (so 3 input channels cost as much as atomic-C of them), plus a fixed
  overhead per output pixel and atomic-K group (``pixel_overhead_*``: why a 64-channel 3x3
  layer runs further below the MAC peak than a 512-channel one). An image-input first layer
  (C <= 4, kDLA_HWC4 style) packs the kernel columns into the channel direction:
  ``ceil(4 * S / atomic_C)`` per row tap. Depth-wise convolution runs on the depth-wise
  processor, ``depthwise_channels_per_cycle`` channels per tap and cycle. Other grouped
  convolutions take the cheaper of group by group and one block-diagonal dense convolution. A
  deconvolution multiplies every input pixel by every tap. A pooling fused behind a convolution
  is a second pass (it adds).
- Memory: bytes as the hardware lays tensors out (``formats.tensor_bytes``: kCHW16 / kCHW32
  padding). When input and weights do not both fit the convolution buffer (CBUF), the cheaper
  of re-reading the input once per weight chunk or the weights once per input chunk is taken
  (the primer's rule). Fetch and MACs overlap only when the banks left beside the weight
  chunk hold two input slices (ping-pong); otherwise they take turns (MAC + DRAM cycles).
  Tensors move over the DRAM port at
  ``min(DBB width * clock, DRAM bandwidth * efficiency)``; intermediate tensors live in local
  DRAM (the managed SRAM serves communication inside a layer, per TensorRT's documentation).
- Post-processing engines stream at their elements/cycle (an SDP pass with a LUT activation at
  the LUT unit's slower rate); fused SDP/PDP run concurrently with the convolution, so they only
  count when slower. ``x * sigmoid(x)`` (SiLU) on a convolution's output is one LUT function
  run in that convolution's SDP pass (:func:`lut_tails`).
- Concatenation along channels is free when its inputs are written in place by ops inside the
  loadable (the DLA compiler points producers at the concat buffer).

Batch: no batching gain; every op pays its fixed cost once per image (linear in batch, as cuDLA's
YOLOv5s sweep is). DLAs running copies at once share the DRAM (``concurrent_dlas``). A loadable
adds ``loadable_fixed_seconds`` (one cuDLA submission). Constants marked ``fit`` in
``dla_sim/hardware.py`` name the published figures they were fitted on; ``BENCHMARKS.md`` and
``bench/dla_latency.py`` compare the model with every figure in ``dla_sim/data/published.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dla_sim import formats
from dla_sim.compiler import compile_loadable
from dla_sim.fusion import Group, group_of
from dla_sim.hardware import DlaConfig, dla_config
from dla_sim.loadable import EngineOp, Loadable, TensorDesc
from partitioner.errors import ConfigError
from partitioner.ir import Graph, Node


@dataclass
class OpTiming:
    """Predicted time of one engine op and what bounds it."""

    op: str
    engine: str
    layers: list[str]
    seconds: float
    cycles: float
    bound: str
    macs: int = 0
    dram_bytes: int = 0
    sram_bytes: int = 0


@dataclass
class LoadableTiming:
    """Predicted time of a whole loadable: its ops plus the per-loadable fixed cost."""

    ops: list[OpTiming] = field(default_factory=list)
    fixed_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        return self.fixed_seconds + self.ops_seconds

    @property
    def ops_seconds(self) -> float:
        """The ops' time, without the per-loadable fixed cost."""
        return sum(o.seconds for o in self.ops)

    def per_layer(self) -> dict[str, float]:
        """Seconds per layer: an op's time goes to its first (anchor) layer; fused layers 0."""
        out: dict[str, float] = {}
        for o in self.ops:
            for i, name in enumerate(o.layers):
                out[name] = o.seconds if i == 0 else 0.0
        return out


# SDP post-op names of the LUT activations (dla_sim.fusion.LUT_OPS as the compiler writes them).
_LUT_POST = frozenset({"sigmoid", "tanh", "sin", "cos", "atanh", "atan"})


def outs_shape(op: EngineOp, tensors: dict[str, TensorDesc]) -> tuple[int, ...]:
    return tuple(tensors[op.outputs[0]].shape)


def _check_clock(clock_hz: float, dram_bytes_per_s: float) -> None:
    if not (clock_hz > 0 and math.isfinite(clock_hz)):
        raise ConfigError(f"DLA clock must be a positive frequency in Hz, got {clock_hz!r}")
    if not (dram_bytes_per_s > 0 and math.isfinite(dram_bytes_per_s)):
        raise ConfigError(f"DRAM bandwidth must be positive bytes/s, got {dram_bytes_per_s!r}")


def _images(desc: TensorDesc) -> int:
    """The batch of a tensor as the DLA loops over it (everything before C, H, W)."""
    shape = tuple(desc.shape)
    if len(shape) >= 4:
        return max(1, math.prod(shape[:-3]))
    return max(1, int(shape[0])) if shape else 1


def _ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def op_timing(
    op: EngineOp,
    tensors: dict[str, TensorDesc],
    cfg: DlaConfig,
    clock_hz: float,
    dram_bytes_per_s: float,
    external: frozenset[str] = frozenset(),
    fused_lut: dict[str, float] | None = None,
) -> OpTiming:
    """Predict one engine op. ``external`` names the loadable's own inputs and outputs;
    ``fused_lut`` maps SDP ops that run inside their producing convolution (:func:`lut_tails`)
    to that convolution's cycles."""
    _check_clock(clock_hz, dram_bytes_per_s)
    dram_per_cycle = min(cfg.dbb_bytes_per_cycle, dram_bytes_per_s * cfg.dram_efficiency / clock_hz)
    ins = [tensors[t] for t in op.inputs]
    outs = [tensors[t] for t in op.outputs]
    traffic: dict[str, float] = {"dram": 0.0, "sram": 0.0}

    def move(desc: TensorDesc, nbytes: float | None = None) -> None:
        traffic[desc.location if desc.location in traffic else "dram"] += (
            desc.bytes if nbytes is None else nbytes
        )

    engine_cycles: dict[str, float] = {}
    macs = 0
    serial = False
    p = op.params
    fused_lut = fused_lut or {}
    if op.name in fused_lut:
        # x * f(x) behind a convolution runs in the conv's own SDP pass through the LUT unit:
        # nothing moves, but the stream is throttled to the LUT's rate. ``fused_lut`` maps the
        # op to the convolution's cycles; only LUT cycles beyond them are added.
        lut = math.prod(outs_shape(op, tensors)) / cfg.sdp_lut_elems_per_cycle
        extra = max(0.0, lut - fused_lut[op.name])
        return OpTiming(op.name, op.engine, list(op.layers), extra / clock_hz, extra, "lut")
    if op.engine == "conv":
        engine_cycles, macs, serial = _conv_cycles(op, ins, outs, cfg, move, traffic)
    elif op.engine == "bdma" and p.get("kind") == "concat" and not (set(op.inputs) & external):
        # Producers wrote into the concat buffer: nothing moves, no hardware layer runs.
        return OpTiming(op.name, op.engine, list(op.layers), 0.0, 0.0, "elided")
    else:
        for d in ins:
            move(d)
        for d in outs:
            move(d)
        elems_in = sum(math.prod(d.shape) for d in ins[:1])
        elems_out = sum(math.prod(d.shape) for d in outs)
        if op.engine == "sdp":
            lut = any(q.get("op") in _LUT_POST for q in p.get("post", []))
            rate = cfg.sdp_lut_elems_per_cycle if lut else cfg.sdp_elems_per_cycle
            engine_cycles["sdp"] = elems_out / rate
        elif op.engine == "pdp":
            engine_cycles["pdp"] = elems_in / cfg.pdp_elems_per_cycle
        elif op.engine == "cdp":
            engine_cycles["cdp"] = elems_in / cfg.cdp_elems_per_cycle
        elif op.engine == "softmax":
            # max, exp-and-sum, normalise: three SDP passes, the input read twice.
            engine_cycles["sdp"] = 3 * elems_in / cfg.sdp_elems_per_cycle
            move(ins[0])
        elif op.engine == "rubik":
            engine_cycles["rubik"] = sum(d.bytes for d in outs) / cfg.rubik_bytes_per_cycle
        elif op.engine == "bdma":
            engine_cycles["bdma"] = sum(d.bytes for d in outs) / cfg.bdma_bytes_per_cycle
    engine_cycles["dram"] = traffic["dram"] / dram_per_cycle
    if serial:
        engine_cycles["mac"] += engine_cycles["dram"]  # fetch and MACs take turns (above)
    engine_cycles["sram"] = traffic["sram"] / cfg.sramif_bytes_per_cycle
    bound = max(engine_cycles, key=lambda k: engine_cycles[k])
    # The DLA has no batching gain: a loadable runs its hardware layers once per image (cuDLA's
    # YOLOv5s sweep grows 3.82 -> 62.54 ms from batch 1 to 16), so each image pays the set-up.
    images = _images(ins[0]) if ins else 1
    cycles = engine_cycles[bound] + cfg.op_fixed_cycles * images
    seconds = cycles / clock_hz + cfg.op_fixed_seconds * images
    return OpTiming(
        op.name,
        op.engine,
        list(op.layers),
        seconds,
        cycles,
        bound,
        macs,
        int(traffic["dram"]),
        int(traffic["sram"]),
    )


def _conv_cycles(
    op: EngineOp,
    ins: list[TensorDesc],
    outs: list[TensorDesc],
    cfg: DlaConfig,
    move: Callable[..., None],
    traffic: dict[str, float],
) -> tuple[dict[str, float], int, bool]:
    p = op.params
    prec = p.get("precision", "int8" if ins[0].dtype == "int8" else "fp16")
    rates = cfg.rates(prec)
    ac, ak = rates.atomic_c, rates.atomic_k
    x = ins[0]
    c_in, k_out = int(p["in_channels"]), int(p["out_channels"])
    r, s = p["kernel"]
    g = int(p.get("group", 1))
    if p["kind"] == "fc":
        n = math.prod(x.shape[:-1]) if len(x.shape) > 2 else x.shape[0]
        h = w = pq_p = pq_q = 1
    else:
        n, _, h, w = formats.as_nchw(tuple(x.shape))
        eh, ew = (r - 1) * p["dilations"][0] + 1, (s - 1) * p["dilations"][1] + 1
        if p["kind"] == "deconv":
            pq_p, pq_q = h, w  # every input pixel meets every tap
        else:
            pq_p = (h + p["pads"][0] + p["pads"][2] - eh) // p["strides"][0] + 1
            pq_q = (w + p["pads"][1] + p["pads"][3] - ew) // p["strides"][1] + 1
    pixels = n * pq_p * pq_q
    cg, kg = c_in // g, k_out // g
    stride = max(p.get("strides", (1, 1))) if p["kind"] == "conv" else 1
    overhead = 0.0
    if g > 1 and cg == 1 and kg == 1:
        atomic_ops = pixels * r * s * _ceil_div(c_in, cfg.depthwise_channels_per_cycle)
    elif g == 1 and c_in <= 4 and p["kind"] == "conv":
        atomic_ops = pixels * r * _ceil_div(4 * s, ac) * _ceil_div(k_out, ak)
    else:
        # A grouped convolution runs group by group, or as one dense convolution with
        # block-diagonal (zero-padded) weights when that wastes fewer atomics: the compiler
        # takes the cheaper (ResNeXt's 32 groups of 4 channels fill a 64-wide atomic 16-fold).
        per_group = g * r * s * _ceil_div(cg, ac) * _ceil_div(kg, ak)
        dense = r * s * _ceil_div(c_in, ac) * _ceil_div(k_out, ak)
        k_groups = g * _ceil_div(kg, ak) if per_group <= dense else _ceil_div(k_out, ak)
        atomic_ops = pixels * min(per_group, dense)
        # Each output pixel of each atomic-K group costs a fixed number of extra cycles besides
        # its R*S*ceil(C/atomic_C) atomics (accumulator drain, weight switch): why a 64-channel
        # 3x3 layer reaches 60 % of the MAC peak and a 512-channel one over 90 %.
        overhead = pixels * k_groups * cfg.pixel_overhead_atomics(stride)
    # Parallel convolution pipes split the output between them.
    mac_cycles = (atomic_ops + overhead) / cfg.conv_pipes(prec)
    macs = pixels * r * s * cg * k_out
    conv_out_elems = pixels * k_out
    cycles: dict[str, float] = {"mac": float(mac_cycles)}
    cycles["sdp"] = conv_out_elems / cfg.sdp_elems_per_cycle
    if "pool" in p:
        # The pooling pass reads the convolution's output after it (TensorRT's layer-wise
        # profile shows a fused stem pool as a second DLA layer), so it adds to the MACs.
        cycles["mac"] += conv_out_elems / cfg.pdp_elems_per_cycle
    # Memory, with CBUF re-reads (per image; weights stay for the batch when they fit).
    e = 1 if prec == "int8" else 2
    weight_bytes = float(p.get("weight_bytes", cg * k_out * r * s * e))
    in_img = x.bytes / max(n if p["kind"] != "fc" else 1, 1)
    images = n if p["kind"] != "fc" else 1
    cbuf = cfg.cbuf_bytes
    wt_banks, data_banks = formats.cbuf_banks_needed(
        cg, r, s, w if p["kind"] != "fc" else 1, p["dilations"][0], prec
    )
    min_in = data_banks * cfg.cbuf_bank_bytes
    min_w = max(wt_banks, 1) * cfg.cbuf_bank_bytes
    serial = False
    if in_img + weight_bytes <= cbuf:
        input_reads, weight_reads = float(images), 1.0
    else:
        chunks_w = _ceil_div(int(weight_bytes), max(cbuf - min_in, cfg.cbuf_bank_bytes))
        chunks_in = _ceil_div(int(in_img), max(cbuf - min_w, cfg.cbuf_bank_bytes))
        reread_input = in_img * chunks_w + weight_bytes
        reread_weights = weight_bytes * chunks_in + in_img
        if reread_input <= reread_weights:
            input_reads, weight_reads = float(images * chunks_w), float(images)
            # The weight chunk stays in CBUF while the input streams through the banks left.
            # The next input rows can only be fetched while the current ones are convolved
            # when those banks hold two slices' worth (ping-pong); otherwise each fetch waits
            # for the MACs to free a bank and the fetch and the MACs take turns (INFERRED from
            # the CBUF's bank split, dla.md §1.2: wide, deep maps beside a large weight chunk).
            chunk_banks = _ceil_div(_ceil_div(int(weight_bytes), chunks_w), cfg.cbuf_bank_bytes)
            serial = cfg.cbuf_banks - chunk_banks < 2 * data_banks
        else:
            input_reads, weight_reads = float(images), float(images * chunks_in)
    move(x, in_img * input_reads)
    if prec == "fp16" and x.dtype == "int8":
        # INT8 input to an FP16 convolution: converted first (read INT8, write FP16), and the
        # convolution then streams the FP16 copy.
        move(x, x.bytes * 2)
    traffic["dram"] += weight_bytes * weight_reads
    for extra in ins[1:]:
        move(extra)
    for d in outs:
        move(d)
    return cycles, macs, serial


def _is_lut_tail(post: list[dict[str, Any]], inputs: list[str]) -> bool:
    """``f(x) * x`` as one SDP op: a LUT activation then a multiply by its own input."""
    return (
        len(post) == 2
        and post[0].get("op") in _LUT_POST
        and post[1].get("op") == "eltwise"
        and post[1].get("kind") == "mul"
        and len(inputs) == 2
        and inputs[0] == inputs[1]
    )


def lut_tails(ops: list[EngineOp], external: frozenset[str] = frozenset()) -> frozenset[str]:
    """SDP ops computing ``x * f(x)`` (SiLU: Sigmoid then Mul) on a convolution's output that
    nothing else reads. The SDP's LUT is a programmable piecewise-linear table of one input
    (dla.md §2.3: Y sub-unit), so ``x * sigmoid(x)`` is one LUT function that runs in the
    convolution's own SDP pass, and TensorRT's DLA compiler fuses Conv + Sigmoid + Mul into one
    DLA layer: INFERRED from cuDLA-samples (README note 2 calls the v2 build's FP16 layers "the
    last 4 layers": build_dla_standalone_loadable_v2.sh lists the three head convolutions and
    model.23.cv3's Conv, Sigmoid and Mul, i.e. 4 DLA layers from 6 ONNX nodes)."""
    producer = {t: op for op in ops for t in op.outputs}
    readers: dict[str, int] = {}
    for op in ops:
        for t in set(op.inputs):
            readers[t] = readers.get(t, 0) + 1
    out = set()
    for op in ops:
        if op.engine != "sdp" or not _is_lut_tail(op.params.get("post", []), list(op.inputs)):
            continue
        src = op.inputs[0]
        prod = producer.get(src)
        if prod is not None and prod.engine == "conv" and readers.get(src) == 1:
            if src not in external:
                out.add(op.name)
    return frozenset(out)


def predict_loadable(
    loadable: Loadable,
    clock_hz: float,
    dram_bytes_per_s: float,
    config: DlaConfig | None = None,
) -> LoadableTiming:
    """Per-op predicted times of a compiled loadable (plus its fixed submission cost)."""
    cfg = config or dla_config(loadable.dla_version)
    external = frozenset(loadable.inputs) | frozenset(loadable.outputs)
    tails = lut_tails(loadable.ops, external)
    ops: list[OpTiming] = []
    by_output: dict[str, OpTiming] = {}
    fused: dict[str, float] = {}
    for op in loadable.ops:
        if op.name in tails:
            fused[op.name] = by_output[op.inputs[0]].cycles
        t = op_timing(op, loadable.tensors, cfg, clock_hz, dram_bytes_per_s, external, fused)
        ops.append(t)
        by_output.update({name: t for name in op.outputs})
    return LoadableTiming(ops, cfg.loadable_fixed_seconds)


def predict_graph(
    graph: Graph,
    precision: str,
    dla_version: int,
    clock_hz: float,
    dram_bytes_per_s: float,
    config: DlaConfig | None = None,
    output_dtype: str | None = None,
    layer_precisions: dict[str, str] | None = None,
    input_format: str | None = None,
    concurrent_dlas: int = 1,
) -> LoadableTiming:
    """Predict a whole DLA segment graph as one loadable, without quantising any weight.

    ``concurrent_dlas`` DLAs run copies at the same time and split the DRAM bandwidth.
    ``output_dtype``, ``layer_precisions`` and ``input_format`` are as in
    :func:`dla_sim.compiler.compile_loadable`.
    """
    cfg = config or dla_config(dla_version)
    loadable = compile_loadable(
        graph,
        precision,
        dla_version,
        name=graph.name,
        config=cfg,
        metadata_only=True,
        output_dtype=output_dtype,
        layer_precisions=layer_precisions,
        input_format=input_format,
    )
    return predict_loadable(loadable, clock_hz, dram_bytes_per_s / concurrent_dlas, cfg)


def segment_overhead_seconds(dla_version: int, config: DlaConfig | None = None) -> float:
    """The fixed cost of running one loadable (a cuDLA submission), per inference."""
    return (config or dla_config(dla_version)).loadable_fixed_seconds


def predict_layer_seconds(
    node: Node,
    graph: Graph,
    precision: str,
    dla_version: int,
    clock_hz: float,
    dram_bytes_per_s: float,
    config: DlaConfig | None = None,
) -> float:
    """Predicted seconds ``node`` adds on DLA ``dla_version`` at ``precision``.

    Layers that fuse into a preceding engine op (a ReLU after a convolution) cost what they
    add to it (often 0), so summing this over a segment gives the segment's op time. The
    per-loadable fixed cost is not included (see :func:`segment_overhead_seconds`).
    """
    cfg = config or dla_config(dla_version)
    group = group_of(node, graph)
    if _graph_lut_tail(group, graph):
        # Runs inside the producing convolution's SDP pass (lut_tails): what the LUT's rate
        # adds beyond that convolution, on the tail's first layer.
        if node is not group.nodes[0]:
            return 0.0
        x = node.inputs[0]
        assert x is not None and x.producer is not None
        conv = _group_seconds(group_of(x.producer, graph), graph, precision, cfg, clock_hz,
                              dram_bytes_per_s)  # fmt: skip
        elems = float(math.prod(x.static_shape()))
        lut = elems / cfg.sdp_lut_elems_per_cycle / clock_hz
        return max(0.0, lut - conv)
    index = next(i for i, n in enumerate(group.nodes) if n is node)
    now = _group_seconds(
        Group(group.engine, group.nodes[: index + 1]),
        graph,
        precision,
        cfg,
        clock_hz,
        dram_bytes_per_s,
    )
    if index == 0:
        return now
    before = _group_seconds(
        Group(group.engine, group.nodes[:index]), graph, precision, cfg, clock_hz, dram_bytes_per_s
    )
    return max(0.0, now - before)


def _graph_lut_tail(group: Group, graph: Graph) -> bool:
    """:func:`lut_tails`'s rule on graph layers (what per-layer pricing sees)."""
    if group.engine != "sdp" or len(group.nodes) != 2:
        return False
    act, mul = group.nodes
    if act.op.lower() not in _LUT_POST or mul.op != "Mul" or not act.inputs:
        return False
    x = act.inputs[0]
    if x is None or {t.name for t in mul.inputs if t is not None} != {x.name, act.outputs[0].name}:
        return False
    if x.producer is None or x in graph.outputs or len(x.consumers) != 2:
        return False
    return group_of(x.producer, graph).engine == "conv"


def _group_seconds(
    group: Group,
    graph: Graph,
    precision: str,
    cfg: DlaConfig,
    clock_hz: float,
    dram_bytes_per_s: float,
) -> float:
    """Time of one group as a standalone op inside a segment made of ``graph``."""
    sub = _group_graph(group, graph)
    segment_outputs = {t.name for t in graph.outputs}
    # Inside a segment a group hands its result on in the segment's precision; only a real
    # segment output is written as the loadable's (FP16 by default) output format.
    inner = not any(t.name in segment_outputs for t in sub.outputs)
    loadable = compile_loadable(
        sub,
        precision,
        cfg.version,
        name=group.anchor.name,
        config=cfg,
        metadata_only=True,
        output_dtype="int8" if precision == "int8" and inner else None,
    )
    io = {t.name for t in graph.inputs} | segment_outputs
    external = frozenset(io)
    return sum(
        op_timing(op, loadable.tensors, cfg, clock_hz, dram_bytes_per_s, external).seconds
        for op in loadable.ops
    )


def _group_graph(group: Group, graph: Graph) -> Graph:
    """A graph holding just ``group``'s layers (sharing constants) with matching I/O."""
    sub = Graph(f"{group.anchor.name}_op", graph.opset)
    members = {id(n) for n in group.nodes}
    for node in group.nodes:
        for t in node.inputs:
            if t is None or t.name in sub.tensors:
                continue
            if t.producer is None or id(t.producer) not in members:
                if hasattr(t, "values"):
                    sub.add_constant(t.name, t.values)  # type: ignore[attr-defined]
                else:
                    sub.add_input(t.name, t.shape or (), t.dtype or "float32")
        outs = [sub.add_variable(t.name, t.shape, t.dtype) for t in node.outputs]
        sub.add_node(
            node.op,
            [sub.tensors[t.name] if t else None for t in node.inputs],
            outs,
            dict(node.attrs),
            name=node.name,
            domain=node.domain,
        )
    for t in group.nodes[-1].outputs:
        sub.mark_output(sub.tensors[t.name])
    return sub
