"""CI (no GPU): Hugging Face text encoders exported by torch.onnx (the conformance exports), in
a GPU-only build, run segment by segment -- host segments on the CPU reference, GPU segments as
their lowered kernels on the numpy kernel model -- against ONNX Runtime. Their host-side integer
math (GPT-2's reshaped token ids, RoBERTa's position ids, DeBERTa's relative positions) feeds
embedding lookups and casts on the GPU; a mask cast to bool leaves a GPU segment as bool bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.conformance import gpu_only_policy, max_rel_err
from devices.cpu import CpuRunner
from devices.io import run_onnxruntime
from gpu_kernels.lowering import lower
from partitioner.subgraph import extract_subgraph
from targets.build import load_model, place, resolve_target
from tests.conformance.test_conformance import MODELS as CONFORMANCE
from tests.gpu_kernels.kernel_sim import simulate

MODELS = ("gpt2", "roberta", "deberta-v2", "clip-text")
BOUND = {"fp32": 1e-5, "fp16": 1e-2}


def run_by_segment(path: Path, precision: str) -> tuple[dict[str, np.ndarray], list[str]]:
    saved = dict(np.load(path.with_suffix(".npz")))
    placement = place(path, resolve_target("orin-agx-64gb"), gpu_only_policy(precision), {},
                      graph=load_model(path, {}))
    graph = placement.graph
    env = {t.name: saved[t.name] for t in graph.inputs}
    devices = []
    for seg in placement.partition.segments:
        sub = extract_subgraph(graph, list(seg.nodes), seg.name)
        feeds = {t.name: env[t.name] for t in sub.inputs}
        if seg.device == "gpu":
            env.update(simulate(lower(sub, precision, arch=87), feeds))
        else:
            with CpuRunner(sub) as runner:
                env.update(runner.infer(feeds))
        devices.append(seg.device)
    return env, devices


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", MODELS)
def test_text_encoder_gpu_segments_match_onnx_runtime(conformance_model, name, precision):
    path = conformance_model("transformers", name, CONFORMANCE["transformers"])
    got, devices = run_by_segment(path, precision)
    assert "gpu" in devices and set(devices) <= {"gpu", "cpu"}
    saved = dict(np.load(path.with_suffix(".npz")))
    ref = run_onnxruntime(path, {k: v for k, v in saved.items() if k != "last_hidden_state"})
    err = max_rel_err(got["last_hidden_state"], ref["last_hidden_state"])
    assert err <= BOUND[precision], err
