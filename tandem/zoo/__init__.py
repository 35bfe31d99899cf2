"""The model zoo: real topologies with seeded random weights, built with onnx's helpers.

``build_model(name, batch=1, resolution=None, seed=0, opset=17)`` returns a checked
``onnx.ModelProto``; ``ZOO_MODELS`` maps each name to its description and default resolution.
"""

from tandem.zoo.builder import MAX_OPSET, MIN_OPSET, GraphBuilder, ZooError
from tandem.zoo.registry import ZOO_MODELS, ZooModel, build_model

__all__ = [
    "MAX_OPSET",
    "MIN_OPSET",
    "ZOO_MODELS",
    "GraphBuilder",
    "ZooError",
    "ZooModel",
    "build_model",
]
