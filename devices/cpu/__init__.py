"""The numpy reference backend: the semantic reference of every other device.

``evaluate_node(node, inputs)`` runs one layer (the constant folder's evaluator);
``CpuRunner(graph)`` runs a whole graph; ``supported_ops()`` lists the op types implemented.
"""

from devices.cpu.interpreter import CpuRunner, run_graph
from devices.cpu.registry import evaluate_node, supported_ops

__all__ = ["CpuRunner", "evaluate_node", "run_graph", "supported_ops"]
