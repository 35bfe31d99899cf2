"""Device capabilities for the partitioner: support tables + cost models of one target.

``capabilities_for(target)`` gives ``{"gpu": ..., "dla": ..., "cpu": ...}`` — the mapping
``partitioner.assign.partition`` takes. Each object implements
``partitioner.capability.DeviceCapability``: ``supports(node, graph, precision) -> Verdict`` (the
reason names the layer and the limit) and ``cost(node, graph, precision) -> seconds`` at the
target's selected power mode. The ``Operator | Count | Reason | Layers`` table that
``tandem inspect`` prints groups the placement's reasons: ``partitioner.report.capability_rows``.

The GPU answers with two sources, both of which must agree: its table (``tables/gpu.yaml``: the
ops, the precisions with a native kernel, what the cost model prices) and the GPU lowering's own
``supports(node, arch, precision)`` (attributes, shapes, dtypes) -- the function the lowering asks
before it calls a handler. Placement therefore never puts a layer on the GPU that the build
cannot lower for the target's arch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from devices.cost import (
    concurrent_slowdown,
    cpu_layer_seconds,
    dla_layer_seconds,
    fusion_anchor,
    gpu_layer_seconds,
    gpu_roofline_seconds,
)
from devices.cpu import supported_ops
from devices.energy import device_watts
from devices.hardware import TargetSpec
from devices.support import (
    SupportEnv,
    SupportResult,
    SupportTable,
    dla_table,
    evaluate,
    gpu_table,
    load_table,
    plugin_support,
)
from gpu_kernels.compile import arch_number
from gpu_kernels.lowering import supports as lowering_supports
from partitioner.capability import DeviceCapability, Precision, Verdict
from partitioner.errors import ConfigError
from partitioner.ir import Constant, Graph, Node, Tensor
from partitioner.passes import HOST_SHAPE, host_math, integer_tensor
from partitioner.plugins import PLUGINS


class _TableCapability:
    """Shared shape of the GPU and DLA capabilities: a support table and a cost function."""

    kind = ""
    device = ""

    def __init__(self, target: TargetSpec, table: SupportTable) -> None:
        self.target = target
        self.table = table
        self.env = SupportEnv(tensorrt=target.tensorrt, dla_sw=target.dla_sw)

    def explain(self, node: Node, graph: Graph, precision: Precision) -> SupportResult:
        """The structured answer behind :meth:`supports` (detail without the layer prefix)."""
        host = host_values(node, self.kind)
        if host is not None:
            return host
        return evaluate(self.table, node, graph, precision, self.env)

    def supports(self, node: Node, graph: Graph, precision: Precision) -> Verdict:
        return self.explain(node, graph, precision).verdict(node)

    def runs_as(self, node: Node, graph: Graph, precision: Precision) -> str:
        """The precision the device really uses for ``precision`` (INT8 may run as FP16).

        Read straight from the table's ``upgrade`` entry: ``cost`` calls this for every layer,
        so it must not re-run the checks."""
        rule = self.table.ops.get(node.op)
        if rule is None or precision in rule.precisions:
            return precision
        return rule.upgrade.get(precision, precision)

    def slowdown(self, device: str, others: Mapping[str, float]) -> float:
        """DRAM contention (``partitioner.capability.SharesMemory``): devices.cost's model."""
        return concurrent_slowdown(device, others)

    def watts(self, device: str) -> float | None:
        """Power of ``device`` while busy at the target's power mode (devices.energy)."""
        return (device_watts(self.target) or {}).get(device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target.name!r}, {self.target.power_mode!r})"


def host_values(node: Node, kind: str) -> SupportResult | None:
    """The GPU's and the DLA's answer for layers of host values, before their tables':

    - a shape computation (``Shape -> Gather -> Concat -> ...`` left while a dim is dynamic,
      marked by ``partitioner.passes.mark_shape_computations``) goes with the GPU segment that
      reads the shapes: the runtime evaluates it on the host once that segment's input shapes
      are known (it folds away), so it never splits a GPU segment nor reaches a kernel;
    - integer-only math (every input and output an int or bool tensor, e.g. data-dependent
      int64 arithmetic) has no GPU or DLA kernel: it runs on the CPU, as its own island.
    ``None`` where the table decides."""
    if node.meta.get(HOST_SHAPE):
        if kind == "gpu":
            return SupportResult(
                True, notes=("shape computation: evaluated on the host with its GPU segment",)
            )
        return SupportResult(False, "shape computation: a host value, kept with the GPU segment")
    if host_math(node):
        tensors = [t for t in (*node.inputs, *node.outputs) if t is not None]
        dtypes = ", ".join(sorted({str(t.dtype) for t in tensors}))
        if node.op == "Cast" and not integer_tensor(node.outputs[0]):
            return SupportResult(False, f"integer-only math's result converted ({dtypes}): "
                                        "runs on the CPU")
        return SupportResult(False, f"integer-only math ({dtypes}): runs on the CPU")
    return None


class GpuCapability(_TableCapability):
    """The target's GPU: what Tandem's GPU lowering runs for its arch, priced by the roofline
    model.

    A layer runs on the GPU when the table lists its op at the precision (or an upgrade) *and*
    the lowering's ``supports`` accepts it for ``sm_<arch>``. ``shapes`` is a twin of the graph
    at concrete shapes (a dynamic-shape build's profile-0 opt shapes): the runtime specialises a
    dynamic GPU segment per input shape, so the lowering judges a layer with symbolic dims at
    those shapes, as the build's cross-compile lowers it.
    """

    kind = "gpu"
    device = "gpu"

    def __init__(
        self, target: TargetSpec, table: SupportTable | None = None, shapes: Graph | None = None
    ) -> None:
        if target.gpu is None:
            raise ConfigError(f"target '{target.name}' has no GPU")
        super().__init__(target, table or gpu_table())
        self.arch = arch_number(target.gpu.arch)
        self.shapes = {n.name: n for n in shapes.nodes} if shapes is not None else {}

    def supports(self, node: Node, graph: Graph, precision: Precision) -> Verdict:
        table = self.explain(node, graph, precision)
        if not table.ok or node.meta.get(HOST_SHAPE):
            # a shape computation is the host's (host_values): it folds away before lowering
            return table.verdict(node)
        concrete = self._concrete(node)
        if concrete is None:
            return Verdict.no(
                f"{node.op} '{node.name}': symbolic dims: the GPU kernels are built for fixed "
                "shapes; fix them (--dim NAME=N) or give an optimisation profile "
                "(--min/--opt/--max-shapes)"
            )
        lowered = lowering_supports(concrete, self.arch, precision)
        if not lowered.ok:
            plugin = PLUGINS.find(node)
            reason = lowered.reason if plugin is None else (
                f"{plugin.label}: Tandem's GPU backend does not run plugin CUDA sources yet")
            named = reason if f"'{node.name}'" in reason else f"{node.op} '{node.name}': {reason}"
            return Verdict.no(named)
        return table.verdict(node)

    def _concrete(self, node: Node) -> Node | None:
        """``node`` as the lowering will see it: its twin at concrete shapes where it has
        symbolic dims and the twin graph holds it; None without a twin graph (no profile)."""
        tensors = [t for t in (*node.inputs, *node.outputs) if t is not None]
        if all(t.shape is None or t.is_static for t in tensors):
            return node  # static, or shapes never inferred: the lowering says which
        if not self.shapes:
            return None
        return self.shapes.get(node.name, node)

    def cost(self, node: Node, graph: Graph, precision: Precision) -> float:
        """Placement's price of ``node``: its roofline and the kernels the per-layer model
        charges it (``devices.cost.gpu_layer_seconds``)."""
        if node.meta.get(HOST_SHAPE):
            return 0.0  # a few integers, computed on the host (see host_values)
        return gpu_layer_seconds(node, graph, self._runs_as(node, graph, precision), self.target)

    def roofline(self, node: Node, graph: Graph, precision: Precision) -> float:
        """:meth:`cost` without any per-kernel part (``devices.cost.gpu_roofline_seconds``):
        what a built plan adds the kernels of the lowered segment to."""
        if node.meta.get(HOST_SHAPE):
            return 0.0
        return gpu_roofline_seconds(node, graph, self._runs_as(node, graph, precision), self.target)

    def _runs_as(self, node: Node, graph: Graph, precision: Precision) -> str:
        # a layer fused into a kernel's epilogue moves its operands at that kernel's precision
        kernel = fusion_anchor(node, graph) or node
        return self.runs_as(kernel, graph, precision)


class DlaCapability(_TableCapability):
    """One DLA core of the target: its version's support table and the DLA latency model."""

    kind = "dla"

    def __init__(
        self, target: TargetSpec, core: int = 0, table: SupportTable | None = None
    ) -> None:
        """``table``: a user's support table (``load_table(path)``) instead of the packaged one
        for the target's DLA version."""
        if target.dla is None:
            raise ConfigError(f"target '{target.name}' has no DLA")
        if not 0 <= core < target.dla.cores:
            raise ConfigError(
                f"target '{target.name}' has {target.dla.cores} DLA core(s): "
                f"dla_core {core} does not exist (use 0..{target.dla.cores - 1})"
            )
        table = table or dla_table(target.dla.version)
        if table.device != "dla":
            raise ConfigError(f"{table.source}: a {table.device} table cannot describe a DLA")
        super().__init__(target, table)
        self.core = core
        self.device = f"dla{core}"

    def segment_problems(
        self, graph: Graph, layers: Iterable[str], precision: Precision = "fp16"
    ) -> list[str]:
        """Reasons ``layers`` cannot form one DLA loadable (see :func:`segment_problems`)."""
        return segment_problems(self, graph, layers, precision)

    @property
    def max_loadables(self) -> int | None:
        """Loadables one DLA core holds at once (16 from TensorRT 8.6)."""
        return self.table.max_loadables_per_core

    def cost(self, node: Node, graph: Graph, precision: Precision) -> float:
        # FP32 has no DLA form; a caller pricing it anyway gets the FP16 time.
        runs = self.runs_as(node, graph, "fp16" if precision == "fp32" else precision)
        return dla_layer_seconds(node, graph, runs, self.target)


class CpuCapability:
    """The host CPU (numpy reference backend): every imported op, in FP32."""

    kind = "cpu"
    device = "cpu"

    def __init__(self, target: TargetSpec) -> None:
        self.target = target
        self.ops = supported_ops()  # the numpy reference runs every op it implements

    def supports(self, node: Node, graph: Graph, precision: Precision) -> Verdict:
        plugin = PLUGINS.find(node)
        if plugin is not None and (node.op not in self.ops or node.domain):
            return plugin_support(plugin, "cpu", "the CPU", "fp32").verdict(node)
        if node.op not in self.ops or node.domain not in ("", "ai.onnx"):
            return Verdict.no(f"{node.op} '{node.name}': no CPU implementation of {node.op}")
        if precision != "fp32":
            return Verdict.yes(f"{node.op} '{node.name}': runs in FP32 on the CPU")
        return Verdict.yes()

    def cost(self, node: Node, graph: Graph, precision: Precision) -> float:
        return cpu_layer_seconds(node, graph, "fp32", self.target)


def capabilities_for(
    target: TargetSpec,
    dla_core: int = 0,
    dla_table_path: str | Path | None = None,
    shapes: Graph | None = None,
) -> dict[str, DeviceCapability]:
    """``{"gpu", "dla", "cpu"}`` capabilities of ``target`` (``dla`` only where it has one;
    ``gpu`` only where it has one — the CPU-only host gets just ``cpu``). ``dla_table_path``
    replaces the packaged DLA support table (e.g. to relax an unconfirmed rule); ``shapes``: see
    :class:`GpuCapability`."""
    caps: dict[str, DeviceCapability] = {}
    if target.gpu is not None:
        caps["gpu"] = GpuCapability(target, shapes=shapes)
    if target.dla is not None:
        table = load_table(dla_table_path) if dla_table_path is not None else None
        caps["dla"] = DlaCapability(target, dla_core, table)
    caps["cpu"] = CpuCapability(target)
    return caps


# ----- per-segment limits -------------------------------------------------------------------------


def segment_problems(
    dla: DlaCapability, graph: Graph, layers: Iterable[str], precision: Precision = "fp16"
) -> list[str]:
    """What keeps ``layers`` from forming one DLA loadable (empty when nothing does).

    dla.md §1.1: cumulative weights < 512 MB per DLA sub-network; non-I/O tensors < 1 GB per
    subgraph; layers with different batch sizes become separate DLA graphs.
    """
    table = dla.table
    names = set(layers)
    nodes = [n for n in graph.topological_order() if n.name in names]
    bpe = {"fp16": 2, "int8": 1}.get(precision, 2)
    problems: list[str] = []
    weights = sum(
        t.values.size * bpe
        for n in nodes
        for t in n.inputs
        if isinstance(t, Constant) and t.values.dtype.kind == "f"
    )
    if table.max_segment_weight_bytes is not None and weights >= table.max_segment_weight_bytes:
        problems.append(
            f"weights {weights / 2**20:.0f} MiB >= DLA limit "
            f"{table.max_segment_weight_bytes / 2**20:.0f} MiB per loadable; split the segment"
        )
    inner = {
        t.name: t
        for n in nodes
        for t in n.outputs
        if t not in graph.outputs and t.consumers and all(c.name in names for c in t.consumers)
    }
    inner_bytes = sum(_numel(t) * bpe for t in inner.values())
    limit = table.max_segment_intermediate_bytes
    if limit is not None and inner_bytes >= limit:
        problems.append(
            f"intermediate tensors {inner_bytes / 2**20:.0f} MiB >= DLA limit "
            f"{limit / 2**20:.0f} MiB per loadable; split the segment"
        )
    batches = sorted({b for n in nodes for b in [_batch(n)] if b is not None})
    if len(batches) > 1:
        problems.append(
            f"layers with batch sizes {', '.join(map(str, batches))}: "
            "the DLA needs one batch size per loadable"
        )
    return problems


def _numel(t: Tensor) -> int:
    shape = t.shape or ()
    return math.prod(d for d in shape if isinstance(d, int))


def _batch(node: Node) -> int | None:
    """DLA batch of a layer's first output: the product of all dims but the last 3."""
    out = node.outputs[0] if node.outputs else None
    if out is None or out.shape is None or not all(isinstance(d, int) for d in out.shape):
        return None
    return math.prod(d for d in out.shape[:-3] if isinstance(d, int))
