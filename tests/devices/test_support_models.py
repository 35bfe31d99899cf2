"""Real models (the zoo and torch.onnx.export output): which layers leave the DLA, and why.

Expected placements follow TensorRT's documented DLA rules (shared/reference/dla.md §1, §5):
MobileNetV3's HardSwish/HardSigmoid and global average pools go to the GPU; a YOLO head's 5-D
reshapes and concats go to the GPU while its convs stay; an OCR detector's stride-2
ConvTranspose (no padding) stays on the DLA but Resize-to-size does not; Xavier additionally
loses Shuffle, Softmax and Pow; in a model with a symbolic batch, every layer that carries the
batch leaves the DLA.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from devices.capability import DlaCapability
from tandem.api import load_graph
from targets.catalog import load_target
from tests.models import exported_model_path

ORIN, XAVIER = "orin-agx-64gb", "xavier-agx"

# (model, target) -> {op: reason substring} for every operator with layers off the DLA.
EXPECTED = {
    ("resnet18", ORIN): {"GlobalAveragePool": "GlobalAveragePool does not run on DLA",
                         "Flatten": "Flatten to a 2-D tensor"},
    ("resnet18", XAVIER): {"GlobalAveragePool": "GlobalAveragePool does not run on DLA",
                           "Flatten": "supported on Orin's DLA only"},
    ("unet-small", ORIN): {},
    ("unet-small", XAVIER): {},
    ("ssd-mobilenet", ORIN): {"Reshape": "Reshape to a 3-D tensor",
                              "Concat": "concatenation on axis 1 of a 3-D tensor"},
    ("ssd-mobilenet", XAVIER): {"Reshape": "supported on Orin's DLA only",
                                "Transpose": "supported on Orin's DLA only",
                                "Concat": "concatenation on axis 1 of a 3-D tensor",
                                "Softmax": "Softmax is supported on Orin's DLA only"},
    ("torch-mobilenetv3-small", ORIN): {
        "HardSwish": "HardSwish is not a DLA activation",
        "HardSigmoid": "HardSigmoid is not a DLA activation",
        "GlobalAveragePool": "GlobalAveragePool does not run on DLA",
        "Flatten": "Flatten to a 2-D tensor"},
    ("torch-dbnet-lite", ORIN): {"Resize": "Resize to output sizes (setOutputDimensions)"},
    ("torch-dbnet-lite", XAVIER): {"Resize": "Resize to output sizes (setOutputDimensions)"},
    ("torch-yolo-lite", ORIN): {"Concat": "DLA concatenates on the channel axis",
                                "Reshape": "5-D tensor", "Split": "splitting a 5-D tensor",
                                "Transpose": "Transpose of a 5-D tensor"},
    ("torch-yolo-lite", XAVIER): {"Concat": "DLA concatenates on the channel axis",
                                  "Reshape": "supported on Orin's DLA only",
                                  "Split": "splitting a 5-D tensor",
                                  "Transpose": "supported on Orin's DLA only",
                                  "Pow": "Pow needs TensorRT >= 10.0 on DLA (target has 8.5.2)"},
}  # fmt: skip


def _path(name: str, zoo_model, model_cache_dir: Path) -> Path:
    if name.startswith("torch-"):
        return exported_model_path(name, model_cache_dir)
    return zoo_model(name)


@pytest.mark.parametrize("model, target", sorted(EXPECTED), ids=lambda v: str(v))
def test_layers_off_the_dla(model: str, target: str, zoo_model, model_cache_dir: Path):
    graph = load_graph(_path(model, zoo_model, model_cache_dir))
    dla = DlaCapability(load_target(target))
    got: dict[str, list[str]] = {}
    for node in graph.topological_order():
        result = dla.explain(node, graph, "fp16")
        if not result.ok:
            got.setdefault(node.op, []).append(result.detail)
    expected = EXPECTED[(model, target)]
    assert set(got) == set(expected), got
    for op, fragment in expected.items():
        assert any(fragment in reason for reason in got[op]), (op, got[op])
    # Whatever is not reported runs on the DLA; the backbone convolutions always do.
    convs = [n for n in graph if n.op == "Conv"]
    assert convs and all(dla.supports(n, graph, "fp16").ok for n in convs)
    if model == "torch-dbnet-lite":
        deconvs = [n for n in graph if n.op == "ConvTranspose"]
        assert deconvs and all(dla.supports(n, graph, "fp16").ok for n in deconvs)


def test_symbolic_batch_keeps_batched_layers_off_the_dla(model_cache_dir: Path):
    graph = load_graph(exported_model_path("torch-yolo-lite-dynamic", model_cache_dir))
    dla = DlaCapability(load_target(ORIN))
    verdicts = [dla.supports(n, graph, "fp16") for n in graph]
    # Only the anchor-grid arithmetic (static (1, 1, 8, 8, 2) tensors) could stay.
    assert sum(v.ok for v in verdicts) <= 2
    reasons = Counter("dynamic shape" in v.reason for v in verdicts)
    assert reasons[True] > len(graph) // 2
    convs = [v.reason for n, v in zip(graph, verdicts) if n.op == "Conv"]
    assert convs and all("needs static shapes" in r for r in convs)
