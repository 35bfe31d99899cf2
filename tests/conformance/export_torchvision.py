"""Export torchvision's model families to ONNX: the conformance set's ``tv-*`` / ``tvd-*`` models.

Runs in ``.venv-export`` (``make export-env``), never in the test process::

    .venv-export/bin/python tests/conformance/export_torchvision.py --list
    .venv-export/bin/python tests/conformance/export_torchvision.py --out DIR [NAME ...]

``tv-*`` go through torch's TorchScript-based exporter (``dynamo=False``, opset 17, constant
folding on: the files most users still have); ``tvd-*`` through the torch.export-based one
(``dynamo=True``), whose graphs differ (LayerNormalization instead of its decomposition, other
names, other shape handling). Weights are seeded (``weights=None``, ``randomise_torch``), inputs
are small so the CPU reference runs each model in seconds (sizes in ``MODELS``).

:func:`build` gives the same module and inputs to a GPU-side script (``bench/conformance.py
--gpu`` times PyTorch eager and torch.compile on it).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_common import Meta, main, randomise_torch, seeded_array, write_export  # noqa: E402

OPSET = 17


@dataclass(frozen=True)
class Spec:
    ctor: str  # the torchvision.models function
    size: int  # square input side
    kwargs: tuple[tuple[str, Any], ...] = ()
    # "" a classifier; "seg": a dict {"out": ...}; "det": backbone + head, no postprocess
    kind: str = ""
    dynamo: bool = False
    notes: str = ""


_DET_NOTE = (
    "backbone + head only (the raw per-anchor class logits and box regressions, no box decoding "
    "or NMS): the full detector does export (torch 2.14.1, opset 17), but the tracer freezes its "
    "data-dependent postprocess at the traced case; with seeded random weights no box passes "
    "the score threshold there, so the file holds no NonMaxSuppression and is right only for "
    "inputs with no detection"
)

MODELS: dict[str, Spec] = {
    "tv-resnet18": Spec("resnet18", 64),
    "tv-resnet50": Spec("resnet50", 64),
    "tv-resnext50_32x4d": Spec("resnext50_32x4d", 64),
    "tv-wide_resnet50_2": Spec("wide_resnet50_2", 64),
    "tv-densenet121": Spec("densenet121", 64),
    "tv-googlenet": Spec("googlenet", 64, (("aux_logits", False), ("init_weights", False))),
    # inception_v3's stem needs >= 75 pixels
    "tv-inception_v3": Spec("inception_v3", 80, (("aux_logits", False), ("init_weights", False))),
    "tv-mobilenet_v2": Spec("mobilenet_v2", 64),
    "tv-mobilenet_v3_small": Spec("mobilenet_v3_small", 64),
    "tv-mobilenet_v3_large": Spec("mobilenet_v3_large", 64),
    "tv-mnasnet1_0": Spec("mnasnet1_0", 64),
    "tv-shufflenet_v2_x1_0": Spec("shufflenet_v2_x1_0", 64),
    "tv-squeezenet1_1": Spec("squeezenet1_1", 64),
    "tv-efficientnet_b0": Spec("efficientnet_b0", 64),
    "tv-efficientnet_b1": Spec("efficientnet_b1", 64),
    "tv-efficientnet_b2": Spec("efficientnet_b2", 64),
    "tv-efficientnet_b3": Spec("efficientnet_b3", 64),
    "tv-efficientnet_v2_s": Spec("efficientnet_v2_s", 64),
    "tv-regnet_x_400mf": Spec("regnet_x_400mf", 64),
    "tv-regnet_y_400mf": Spec("regnet_y_400mf", 64),
    "tv-convnext_tiny": Spec("convnext_tiny", 64),
    # the ViT-B/16 encoder at 64x64: 16 patches + the class token (the weights are the full
    # 86 M parameters whatever the image size)
    "tv-vit_b_16": Spec("vit_b_16", 64, (("image_size", 64),),
                        notes="image_size=64 (16 patches + the class token); the 86 M "
                              "parameters make a 346 MB file, the largest of the set"),
    "tv-swin_t": Spec("swin_t", 64),
    # MaxViT partitions every stage's feature map into 7x7 windows and grids, and the map is
    # the input / 32 at the last stage: 224 is the smallest input maxvit_t accepts
    "tv-maxvit_t": Spec("maxvit_t", 224, (("input_size", (224, 224)),),
                        notes="224x224: the smallest input maxvit_t's 7x7 partitions allow"),
    "tv-fcn_resnet50": Spec(
        "segmentation.fcn_resnet50", 64, (("aux_loss", False),), kind="seg"),
    "tv-deeplabv3_mobilenet_v3_large": Spec(
        "segmentation.deeplabv3_mobilenet_v3_large", 64, (("aux_loss", False),), kind="seg"),
    "tv-lraspp_mobilenet_v3_large": Spec(
        "segmentation.lraspp_mobilenet_v3_large", 64, kind="seg"),
    "tv-ssdlite320_mobilenet_v3_large": Spec(
        "detection.ssdlite320_mobilenet_v3_large", 64, kind="det", notes=_DET_NOTE),
    "tv-retinanet_resnet50_fpn": Spec(
        "detection.retinanet_resnet50_fpn", 64, kind="det", notes=_DET_NOTE),
    "tv-fcos_resnet50_fpn": Spec("detection.fcos_resnet50_fpn", 64, kind="det", notes=_DET_NOTE),
    # the torch.export-based exporter: a different tool with different graphs
    "tvd-resnet18": Spec("resnet18", 64, dynamo=True),
    "tvd-mobilenet_v3_small": Spec("mobilenet_v3_small", 64, dynamo=True),
    "tvd-convnext_tiny": Spec("convnext_tiny", 64, dynamo=True),
}

_SEG_DET_KWARGS = {"weights_backbone": None}  # never download backbone weights


def _constructor(path: str) -> Any:
    import torchvision

    obj: Any = torchvision.models
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _wrap(model: Any, kind: str) -> Any:
    """A module whose forward returns plain tensors (the exporters' and torch.compile's input)."""
    from torch import nn

    if kind == "seg":
        class Segmenter(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = model

            def forward(self, x: Any) -> Any:
                return self.net(x)["out"]

        return Segmenter()
    if kind == "det":
        class BackboneHead(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.backbone = model.backbone
                self.head = model.head

            def forward(self, x: Any) -> Any:
                features = list(self.backbone(x).values())
                out = self.head(features)
                return tuple(out[k] for k in sorted(out))

        return BackboneHead()
    return model


def output_names(name: str) -> list[str]:
    kind = MODELS[name].kind
    if kind == "det":
        heads = ["bbox_ctrness", "bbox_regression", "cls_logits"]
        return heads if "fcos" in name else heads[1:]
    return ["out"] if kind == "seg" else ["logits"]


def build(name: str, seed: int = 0, batch: int = 1, size: int | None = None
          ) -> tuple[Any, tuple[Any, ...]]:  # fmt: skip
    """Model ``name`` in eval mode with seeded random weights, and its example inputs
    (``batch`` x 3 x ``size`` x ``size``; ``size`` defaults to the spec's)."""
    import torch

    spec = MODELS[name]
    size = size or spec.size
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"weights": None, **dict(spec.kwargs)}
    # the models whose constructor fixes the input side follow the one asked for
    if "image_size" in kwargs:
        kwargs["image_size"] = size
    if "input_size" in kwargs:
        kwargs["input_size"] = (size, size)
    if spec.kind:
        kwargs.update(_SEG_DET_KWARGS)
    model = _constructor(spec.ctor)(**kwargs)
    randomise_torch(model, seed)
    module = _wrap(model, spec.kind).eval()
    x = torch.from_numpy(seeded_array((batch, 3, size, size), seed))
    return module, (x,)


def export(name: str, out: Path, seed: int, batch: int = 1, size: int | None = None) -> None:
    import io

    import torch
    import torchvision

    spec = MODELS[name]
    module, inputs = build(name, seed, batch, size)
    outs = output_names(name)
    start = time.perf_counter()
    with torch.no_grad():
        expected = module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    # outside no_grad: there nn.MultiheadAttention takes its fused fast path
    # (aten::_native_multi_head_attention), which the TorchScript exporter cannot write
    if spec.dynamo:
        program = torch.onnx.export(
            module, inputs, dynamo=True, input_names=["input"], output_names=outs,
            optimize=True)
        onnx_bytes = program.model_proto.SerializeToString()
        opset = next(o.version for o in program.model_proto.opset_import if o.domain == "")
        how = "torch.onnx.export(dynamo=True)"
    else:
        buf = io.BytesIO()
        torch.onnx.export(
            module, inputs, buf, dynamo=False, opset_version=OPSET,
            do_constant_folding=True, input_names=["input"], output_names=outs)
        onnx_bytes, opset = buf.getvalue(), OPSET
        how = "torch.onnx.export(dynamo=False)"
    seconds = time.perf_counter() - start
    meta = Meta(
        source="torchvision",
        exporter=f"{how} torch {torch.__version__} torchvision {torchvision.__version__}",
        opset=opset,
        notes=spec.notes,
    )
    write_export(
        out, name, onnx_bytes,
        {"input": inputs[0].numpy()},
        {k: v.detach().numpy() for k, v in zip(outs, expected)},
        meta,
    )
    params = sum(p.numel() for p in module.parameters())
    print(f"{name}: exported in {seconds:.1f} s, {len(onnx_bytes) / 1e6:.1f} MB, "
          f"{params / 1e6:.1f} M parameters, input {'x'.join(map(str, inputs[0].shape))}",
          flush=True)


def _quiet() -> None:
    import warnings

    warnings.filterwarnings("ignore")  # the exporters' tracer warnings are not failures


if __name__ == "__main__":
    raise SystemExit(main(MODELS, export, __doc__.split("\n\n")[0], setup=_quiet,
                         resizable=True))
