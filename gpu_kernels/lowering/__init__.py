"""Lower a graph (a GPU segment or a whole model) to a list of kernel launches, and plan memory.

One handler per ONNX op (:mod:`.registry`), found by name, each with a ``supports(node, arch,
precision) -> Verdict`` that answers without lowering; :func:`supports` is the one entry.

- :mod:`.program` — what a lowering produces (buffers, values, launches, the program) and the
  memory plan; :mod:`.values` — the lowering's state: values, copies, deferred chains made real,
  channel-Concat planning, destinations (a tensor whose one reader is a Concat, through
  Reshape views, or an FP32 graph output is written there by its producer), and
  :meth:`Lowering.run`;
- what fuses into a convolution's or a GEMM's epilogue is decided by
  :func:`partitioner.passes.fusion.epilogue`, and which squeeze-and-excitation blocks run as
  the two SE kernels (:mod:`.se`) by :func:`partitioner.passes.fusion.squeeze_excitation` (the
  cost model reads the same answers);
- handlers: :mod:`.conv` (1-D and 2-D), :mod:`.gemm` (and attention's batched products),
  :mod:`.einsum` (as one batched product), :mod:`.elementwise` (deferred, fused: arithmetic,
  comparisons, Where; a Concat of chains as one kernel), :mod:`.norms` (pooling, layer /
  instance / group normalisation), :mod:`.reduce` (reductions over any axes, softmax over any
  axis), :mod:`.movement` (views, Concat, Gather, Pad, Expand, Tile, Resize), :mod:`.int8`
  (INT8 decisions, Quantize / Dequantize), :mod:`.recurrent` (RNN / GRU / LSTM: a projection
  GEMM, then one time-loop kernel a layer).
"""

from __future__ import annotations

from gpu_kernels.lowering.program import (
    ACT,
    ALIAS_OPS,
    BINARY_OPS,
    FUSED_IN,
    FUSED_OPS,
    MAXR,
    UNARY_OPS,
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
    args_for,
    describe,
    kernels_by_layer,
    plan_memory,
    segment_precision,
)
from gpu_kernels.lowering.registry import lowered_ops, supports
from gpu_kernels.lowering.values import Lowering
from partitioner.ir import Graph

__all__ = [
    "ACT", "ALIAS_OPS", "BINARY_OPS", "FUSED_IN", "FUSED_OPS", "MAXR", "UNARY_OPS",
    "GpuLoweringError", "GpuProgram", "Launch", "Lazy", "Leaf", "Lowering", "Op", "Ref",
    "TacticChooser", "VBuf", "Value", "args_for", "describe", "kernels_by_layer", "lower",
    "lowered_ops", "plan_memory", "segment_precision", "supports",
]


def lower(graph: Graph, precision: str = "fp16", arch: int = 90,
          choose: TacticChooser | None = None, sm_count: int = 132,
          scales: dict[str, float] | None = None) -> GpuProgram:
    """Lower ``graph`` to GPU launches with planned memory (no GPU needed); INT8 needs
    per-tensor ``scales`` (threshold / 127)."""
    from gpu_kernels.tactics import heuristic

    chooser = choose or (lambda p: heuristic(p, arch, sm_count))
    return Lowering(graph, precision, arch, chooser, scales, sm_count).run()
