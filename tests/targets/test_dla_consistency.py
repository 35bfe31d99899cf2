"""The support tables and the emulator agree: every segment the partitioner sends to the DLA
compiles into a loadable, for each DLA version, at FP16 and INT8, on every zoo model."""

from __future__ import annotations

import pytest

from dla_sim.compiler import compile_loadable
from partitioner.subgraph import extract_subgraph
from targets.build import place, resolve_policy, resolve_target
from tests.models import ZOO_CASES, model_params


@pytest.mark.parametrize("case", model_params(ZOO_CASES))
@pytest.mark.parametrize("target", ["xavier-agx", "orin-agx-64gb"])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_every_dla_segment_compiles(case, model_file, target, precision):
    spec = resolve_target(target)
    placement = place(model_file(case), spec, resolve_policy(None, precision=precision))
    dla_segments = [s for s in placement.partition.segments if s.device.startswith("dla")]
    assert dla_segments, "zoo models all have DLA-eligible layers"
    for seg in dla_segments:
        sub = extract_subgraph(placement.graph, list(seg.nodes), seg.name)
        loadable = compile_loadable(
            sub, precision, spec.dla.version, None, seg.name, metadata_only=True
        )
        covered = {layer for op in loadable.ops for layer in op.layers}
        assert covered == set(seg.nodes), f"{seg.name}: layers without an engine op"
