"""A GPU segment of a plan on CUDA: one compiled :class:`~devices.gpu.GpuRunner` per distinct
input-shape set.

Kernels, launch grids and the memory plan are specialised to static shapes, so a segment with
symbolic dims (a dynamic-shape plan) compiles once per shape it meets, like an engine per
profile shape. A static segment compiles exactly once, at activation.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from devices.cpu import evaluate_node
from devices.runner import BaseRunner
from partitioner.ir import Graph
from partitioner.passes import eliminate_dead_nodes, fold_constants, run_passes

Shapes = tuple[tuple[int, ...], ...]


class GpuSegmentRunner(BaseRunner):
    """Runs a plan's GPU segment ``graph`` on CUDA at ``precision``, compiling per shape set."""

    def __init__(
        self,
        graph: Graph,
        precision: str,
        timing_cache: Any = None,
        prebuilt: Mapping[tuple[str, tuple[str, ...]], bytes] | None = None,
        scales: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(graph, f"cuda:{graph.name}")
        self.segment = graph
        self.precision = precision
        self.scales = dict(scales or {})
        self.timing_cache = timing_cache
        self.prebuilt = dict(prebuilt or {})
        #: the compiled GpuRunner of each input-shape set met so far
        self.runners: dict[Shapes, Any] = {}

    def activate_impl(self) -> None:
        if all(t.is_static for t in self.segment.inputs):
            self._runner(tuple(t.static_shape() for t in self.segment.inputs))

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = tuple(tuple(int(d) for d in feeds[t.name].shape) for t in self.segment.inputs)
        return self._runner(key).infer(feeds)  # type: ignore[no-any-return]

    def deactivate_impl(self) -> None:
        for runner in self.runners.values():
            runner.deactivate()
        self.runners = {}

    def _runner(self, key: Shapes) -> Any:
        runner = self.runners.get(key)
        if runner is None:
            from devices.gpu import GpuRunner  # CUDA's bindings load only when a GPU runs

            graph = self.segment
            if not all(t.is_static for t in graph.inputs):
                graph = _specialise(graph, key)
            runner = GpuRunner(
                graph,
                precision=self.precision,
                timing_cache=self.timing_cache,
                prebuilt=self.prebuilt,
                scales=self.scales,
            )
            runner.activate()
            self.runners[key] = runner
        return runner


def _specialise(graph: Graph, shapes: Shapes) -> Graph:
    """A copy of ``graph`` with its inputs at ``shapes``, every shape re-inferred, and the shape
    computations the segment carries (``Shape -> Gather -> Concat -> Reshape`` arguments, host
    values) folded to constants: the kernels see static shapes and float tensors only."""
    from partitioner.shape_inference import infer_shapes

    g = graph.clone()
    for t, shape in zip(g.inputs, shapes):
        t.shape = shape
    for tensor in g.tensors.values():
        if tensor.producer is not None and not tensor.is_static:
            tensor.shape = None  # symbolic hints from the build do not survive a fixed shape
    infer_shapes(g)
    if any(n.op == "Shape" for n in g.nodes):
        fold = functools.partial(fold_constants, evaluate=evaluate_node)
        run_passes(g, [fold, eliminate_dead_nodes])
        g.toposort()
        infer_shapes(g)
    return g
