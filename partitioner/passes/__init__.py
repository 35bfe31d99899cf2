"""Graph passes. Each is a small function ``(graph, ...) -> bool`` (True if it changed the
graph); :func:`run_passes` runs a list to a fixed point and :func:`simplify` is the default
import-time pipeline."""

from partitioner.passes.batchnorm import fold_batchnorm_into_conv
from partitioner.passes.cleanup import drop_identity, eliminate_dead_nodes
from partitioner.passes.fold import (
    HOST_SHAPE,
    MAX_EXPANDED_ELEMENTS,
    Evaluate,
    fold_constants,
    host_math,
    integer_tensor,
    mark_shape_computations,
)
from partitioner.passes.fusion import mark_fusions
from partitioner.passes.manager import Pass, run_passes
from partitioner.passes.padding import resolve_auto_pad
from partitioner.passes.pipeline import simplify
from partitioner.passes.qdq import has_qdq, strip_qdq

__all__ = [
    "HOST_SHAPE",
    "MAX_EXPANDED_ELEMENTS",
    "Evaluate",
    "Pass",
    "drop_identity",
    "eliminate_dead_nodes",
    "fold_batchnorm_into_conv",
    "fold_constants",
    "has_qdq",
    "host_math",
    "integer_tensor",
    "mark_fusions",
    "mark_shape_computations",
    "resolve_auto_pad",
    "run_passes",
    "simplify",
    "strip_qdq",
]
