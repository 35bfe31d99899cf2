"""CpuRunner: runs a Graph node by node on the numpy reference ops (torch.fx Interpreter style).

Intermediate tensors are dropped as soon as their last consumer has run, so memory follows the
live set rather than the whole graph; ``peak_bytes`` reports the high-water mark of activations
(constants excluded) of the last run -- an upper bound, since outputs that are views of their
input (Reshape, Transpose, Squeeze, ...) count as bytes of their own. ``capture`` keeps chosen
intermediates for ``compare --bisect``: ``True`` keeps every tensor, a set of names keeps those.

``threads`` (default: the cores this process may use) is how many threads an inference uses:
big GEMMs and im2col copies are split over that many Python threads running single-threaded
OpenBLAS (see ``devices.cpu.parallel`` for why not OpenBLAS's own threads); 1 runs everything
on the calling thread with one BLAS thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from devices.cpu.parallel import parallelism
from devices.cpu.registry import evaluate_node
from devices.cpu.threads import blas_threads
from devices.runner import BaseRunner
from partitioner.errors import ExecutionError
from partitioner.ir import Constant, Graph, Node


class CpuRunner(BaseRunner):
    """The numpy reference backend as a runner."""

    def __init__(
        self,
        graph: Graph,
        capture: bool | Iterable[str] = False,
        name: str | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(graph, name or f"cpu:{graph.name}")
        self.graph: Graph = graph
        self.threads = threads if threads is not None else _usable_cores()
        self.capture_all = capture is True
        self.capture_names: set[str] = set() if isinstance(capture, bool) else set(capture)
        #: tensors kept by ``capture`` during the last run, by name
        self.captured: dict[str, np.ndarray] = {}
        #: high-water mark of live activation bytes in the last run
        self.peak_bytes = 0
        self._order: list[Node] = []
        self._last_use: dict[str, int] = {}
        self._constants: dict[str, np.ndarray] = {}
        self._outputs: set[str] = set()

    def activate_impl(self) -> None:
        self._order = self.graph.topological_order()
        self._constants = {t.name: t.values for t in self.graph.constants()}
        keep = {t.name for t in self.graph.outputs}
        self._outputs = keep
        last: dict[str, int] = {}
        for i, node in enumerate(self._order):
            for t in node.inputs:
                if t is not None and t.name not in self._constants:
                    last[t.name] = i
        self._last_use = {n: i for n, i in last.items() if n not in keep}

    def deactivate_impl(self) -> None:
        self._order, self._last_use, self._constants = [], {}, {}

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.threads <= 1:
            with blas_threads(1):
                return self._run(feeds)
        with parallelism(self.threads):
            return self._run(feeds)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, np.ndarray] = dict(feeds)
        self.captured = {}
        live = sum(a.nbytes for a in env.values())
        peak = live
        for i, node in enumerate(self._order):
            args = [self._lookup(env, node, t.name) if t is not None else None for t in node.inputs]
            results = evaluate_node(node, args)
            if len(results) < len(node.outputs):
                raise ExecutionError(
                    f"layer '{node.name}' ({node.op}): produced {len(results)} outputs, "
                    f"the graph expects {len(node.outputs)}"
                )
            for tensor, value in zip(node.outputs, results):
                env[tensor.name] = value
                live += value.nbytes
                if self.capture_all or tensor.name in self.capture_names:
                    self.captured[tensor.name] = value
            peak = max(peak, live)
            # free what no later layer reads (graph outputs never appear in _last_use)
            for t in node.inputs:
                if t is not None and self._last_use.get(t.name) == i and t.name in env:
                    live -= env.pop(t.name).nbytes
            for t in node.outputs:
                if t.name not in self._last_use and t.name not in self._outputs:
                    live -= env.pop(t.name).nbytes  # nothing reads it at all
        self.peak_bytes = peak
        outputs: dict[str, np.ndarray] = {}
        for t in self.graph.outputs:
            if isinstance(t, Constant):
                outputs[t.name] = t.values
            elif t.name in env:
                outputs[t.name] = env[t.name]
            else:
                raise ExecutionError(f"graph output '{t.name}' was never produced")
        return outputs

    def _lookup(self, env: dict[str, np.ndarray], node: Node, name: str) -> np.ndarray:
        if name in env:
            return env[name]
        if name in self._constants:
            return self._constants[name]
        raise ExecutionError(
            f"layer '{node.name}' ({node.op}): input '{name}' has no value "
            "(not fed, not produced by an earlier layer)"
        )


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_graph(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Convenience: run ``graph`` once on the CPU reference backend."""
    with CpuRunner(graph) as runner:
        return runner.infer(feeds)
