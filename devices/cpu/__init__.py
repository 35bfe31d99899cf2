"""The numpy reference backend: the semantic reference of every other device.

``evaluate_node(node, inputs)`` runs one layer (the constant folder's evaluator);
``CpuRunner(graph)`` runs a whole graph; ``supported_ops()`` lists the op types implemented.
"""

from devices.cpu.interpreter import CpuRunner, run_graph
from devices.cpu.registry import evaluate_node, supported_ops
from devices.cpu.threads import blas_threads, get_blas_threads, set_blas_threads

__all__ = [
    "CpuRunner",
    "blas_threads",
    "evaluate_node",
    "get_blas_threads",
    "run_graph",
    "set_blas_threads",
    "supported_ops",
]
