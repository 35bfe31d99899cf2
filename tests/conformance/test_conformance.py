"""The real-model conformance set, CPU side: per exported model, the checks of
``bench/conformance.py`` (import; CPU reference vs ONNX Runtime <= 1e-4 FP32; GPU-only FP16
cross-builds for orin-agx-64gb and xavier-agx with every GPU segment lowered; import + DLA
placement under 10 s).

Collecting these tests imports no exporter: the model names are the static lists below, kept
equal to each script's ``--list`` by ``test_static_list_matches_the_export_script``. The models
are exported into pytest's temp dir (``tests/models.py``), a few per subprocess of the source's
script under its own venv, and deleted once checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.conformance import SOURCES, check_model, list_models
from tests.conformance.dla_exports import check_dla_exports
from tests.models import CONFORMANCE_CHUNK, conformance_group, release_conformance_model

# The models each source's export script writes, in its --list order. A source whose script is
# on another branch lists nothing here; its line fills when the script merges (the sync test
# fails until it does).
MODELS: dict[str, tuple[str, ...]] = {
    "torchvision": (
        "tv-resnet18", "tv-resnet50", "tv-resnext50_32x4d", "tv-wide_resnet50_2",
        "tv-densenet121", "tv-googlenet", "tv-inception_v3", "tv-mobilenet_v2",
        "tv-mobilenet_v3_small", "tv-mobilenet_v3_large", "tv-mnasnet1_0",
        "tv-shufflenet_v2_x1_0", "tv-squeezenet1_1", "tv-efficientnet_b0", "tv-efficientnet_b1",
        "tv-efficientnet_b2", "tv-efficientnet_b3", "tv-efficientnet_v2_s", "tv-regnet_x_400mf",
        "tv-regnet_y_400mf", "tv-convnext_tiny", "tv-vit_b_16", "tv-swin_t", "tv-maxvit_t",
        "tv-fcn_resnet50", "tv-deeplabv3_mobilenet_v3_large", "tv-lraspp_mobilenet_v3_large",
        "tv-ssdlite320_mobilenet_v3_large", "tv-retinanet_resnet50_fpn", "tv-fcos_resnet50_fpn",
        "tvd-resnet18", "tvd-mobilenet_v3_small", "tvd-convnext_tiny",
    ),  # fmt: skip
    "timm": (
        "timm-repvgg-a0", "timm-mobileone-s0", "timm-fastvit-t8", "timm-mobilevit-xxs",
        "timm-levit-128s", "timm-efficientvit-b0", "timm-hrnet-w18-small", "timm-ghostnet-100",
    ),  # fmt: skip
    "ultralytics": (
        "yolov8n", "yolov8s", "yolov8n-seg", "yolov8n-pose", "yolov8s-seg", "yolov8s-pose",
        "yolo11n", "yolo11s", "yolo11n-seg", "yolo11n-pose", "yolo11s-seg", "yolo11s-pose",
        "yolov8n-640",
    ),  # fmt: skip
    "transformers": (
        "bert", "distilbert", "hf-vit", "hf-vit-dynamo", "detr", "segformer", "swin", "convnext",
        "mobilevit", "whisper-encoder", "wav2vec2", "gpt2", "roberta", "deberta-v2",
        "clip-text",
    ),  # fmt: skip
    "paddle": (
        "paddle-ocr-rec-svtr", "paddle-ocr-rec-crnn", "paddle-ocr-det-db", "paddle-pplcnet",
        "paddle-same-pad-norm",
    ),  # fmt: skip
}

# THE table of checks that fail today because their fix is on another branch: "MODEL-CHECK" (a
# CHECKS entry) -> why and the branch that fixes it. strict: a model that starts passing fails
# here until its line is deleted, so the merge of a fix deletes the lines it fixes.
XFAIL: dict[str, str] = {}


@pytest.mark.parametrize("source", list(MODELS))
def test_static_list_matches_the_export_script(source: str) -> None:
    exporter = SOURCES[source]
    if not exporter.script.exists():
        assert not MODELS[source], f"{source}: models listed, but {exporter.script.name} is missing"
        return
    missing = exporter.missing()
    if missing:
        pytest.skip(missing)
    assert tuple(list_models(exporter)) == MODELS[source], (
        f"{source}: MODELS differs from {exporter.script.name} --list; update MODELS"
    )


def test_xfail_table_names_known_models() -> None:
    known = {f"{n}-{c}" for names in MODELS.values() for n in names for c in CHECKS}
    assert set(XFAIL) <= known, f"XFAIL names unknown models: {sorted(set(XFAIL) - known)}"


# Per model, in this order while its export is on disk: the conformance checks, then issue 18's
# board-side DLA segment exports (TensorRT 10 and 11 styles) at FP16 and INT8.
CHECKS = ("conforms", "dla-export-fp16", "dla-export-int8")


def _params() -> list[Any]:
    params = []
    for source, names in MODELS.items():
        for name in names:
            for check in CHECKS:
                xfail = XFAIL.get(f"{name}-{check}")
                marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
                params.append(pytest.param(source, name, check, id=f"{name}-{check}", marks=marks))
    return params


_TEST_MODEL = re.compile(rf".*::test_model\[(.+)-({'|'.join(CHECKS)})\]")
_SOURCE_OF = {name: source for source, names in MODELS.items() for name in names}


def xdist_group_of(nodeid: str) -> str | None:
    """The pytest-xdist group of a test, by node id (tests/conftest.py's scheduler for
    ``--dist loadgroup``): a conformance model's checks belong to its export chunk's group
    (tests/models.py conformance_group); None for every other test."""
    match = _TEST_MODEL.fullmatch(nodeid)
    if match is None or match.group(1) not in _SOURCE_OF:
        return None
    source = _SOURCE_OF[match.group(1)]
    return conformance_group(source, match.group(1), MODELS[source])


def test_each_export_chunk_is_one_xdist_group_in_check_order() -> None:
    """``make test`` runs on pytest-xdist workers with ``--dist loadgroup``: a group's tests run
    on one worker in collection order. A group must be one export chunk, each model's checks in
    CHECKS order, so the chunk is exported once and each model is deleted by its last check
    (a chunk split over two workers would export twice and hold its files twice)."""
    groups: dict[str, list[str]] = {}
    for param in _params():
        nodeid = f"tests/conformance/test_conformance.py::test_model[{param.id}]"
        group = xdist_group_of(nodeid)
        assert group is not None, nodeid
        groups.setdefault(group, []).append(str(param.id))
    for source, names in MODELS.items():
        for start in range(0, len(names), CONFORMANCE_CHUNK):
            chunk = names[start : start + CONFORMANCE_CHUNK]
            group = groups.pop(conformance_group(source, chunk[0], names))
            assert group == [f"{n}-{c}" for n in chunk for c in CHECKS], f"{source}: {chunk}"
    assert not groups, f"groups that are no export chunk: {sorted(groups)}"
    assert xdist_group_of("tests/conformance/test_conformance.py::test_xfail_table") is None


@pytest.mark.parametrize(("source", "name", "check"), _params())
def test_model(source: str, name: str, check: str, conformance_model: Callable[..., Path]) -> None:
    path = conformance_model(source, name, MODELS[source])
    try:
        if check == "conforms":
            row = check_model(path, source)
            assert not row.failures, "; ".join(f"{c}: {why}" for c, why in row.failures.items())
        else:
            check_dla_exports(path, check.rsplit("-", 1)[1])
    finally:  # the model's last check gives its disk back before the next chunk exports
        if check == CHECKS[-1]:
            release_conformance_model(path)
