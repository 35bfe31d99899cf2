"""The default import-time cleanup."""

from __future__ import annotations

import functools

from partitioner.ir import Graph
from partitioner.passes.batchnorm import fold_batchnorm_into_conv
from partitioner.passes.cleanup import drop_identity, eliminate_dead_nodes
from partitioner.passes.fold import Evaluate, fold_constants, mark_shape_computations
from partitioner.passes.fusion import mark_fusions
from partitioner.passes.manager import run_passes
from partitioner.passes.padding import resolve_auto_pad
from partitioner.shape_inference import infer_shapes


def simplify(graph: Graph, evaluate: Evaluate, *, lint: bool = False) -> Graph:
    """Fold constants, drop Identity/Dropout, fold BN into Conv, drop dead nodes, re-infer
    shapes (resolving auto_pad where they became static), mark fusions and the shape
    computations left (host values, see ``fold.mark_shape_computations``). Edits ``graph`` in
    place and returns it.

    Folding runs first so shape subgraphs vanish before the structural passes look for patterns.
    """
    run_passes(
        graph,
        [
            functools.partial(fold_constants, evaluate=evaluate),
            drop_identity,
            fold_batchnorm_into_conv,
            eliminate_dead_nodes,
        ],
        lint=lint,
    )
    graph.toposort()
    infer_shapes(graph)
    resolve_auto_pad(graph)
    mark_fusions(graph)
    mark_shape_computations(graph)
    if lint:
        graph.lint()
    return graph
