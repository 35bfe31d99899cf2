"""Conformance models from timm (PyTorch Image Models), exported by ``torch.onnx.export``.

timm holds the architectures that stress a DLA/GPU placer in ways torchvision's do not: the
re-parameterisable multi-branch blocks of RepVGG and MobileOne exported in their training form
(each block sums a 3x3 conv+BN, a 1x1 conv+BN and an identity BN, the shape that once took
13.8 minutes to place), and hybrid conv/attention networks (FastViT, MobileViT, LeViT,
EfficientViT, HRNet's multi-resolution fusion). Built with ``pretrained=False`` and seeded
weights; nothing is downloaded.

Runs in ``.venv-export``: ``python tests/conformance/export_timm.py --list`` /
``--out DIR [NAME ...]`` (see export_common.py for the files each export writes).
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from export_common import (  # noqa: E402
    Meta,
    calibrate_batchnorm,
    main,
    randomise_torch,
    seeded_array,
    write_export,
)

OPSET = 17
# name -> (timm model name, input side, extra create_model arguments)
MODELS: dict[str, tuple[str, int, dict]] = {
    "timm-repvgg-a0": ("repvgg_a0", 64, {}),
    "timm-mobileone-s0": ("mobileone_s0", 64, {}),
    "timm-fastvit-t8": ("fastvit_t8", 64, {}),
    "timm-mobilevit-xxs": ("mobilevit_xxs", 64, {}),
    "timm-levit-128s": ("levit_128s", 64, {"img_size": 64}),
    "timm-efficientvit-b0": ("efficientvit_b0", 64, {}),
    "timm-hrnet-w18-small": ("hrnet_w18_small", 64, {}),
    "timm-ghostnet-100": ("ghostnet_100", 64, {}),
}

# The re-parameterisable multi-branch networks sum up to six BN'd branches a block: with random
# weights their activations grow past FP16's range (MobileOne-S0's logits reached 1.9e9), which
# says nothing of a trained network. Their BN statistics are calibrated on the seeded input; the
# other networks keep random statistics, whose activations stay in range.
CALIBRATED = {"timm-repvgg-a0", "timm-mobileone-s0"}


def build(name: str, seed: int = 0, batch: int = 1, size: int | None = None):
    """The module (eval mode, seeded weights) and its example input, as exported
    (``batch`` x 3 x ``size`` x ``size``; ``size`` defaults to the table's)."""
    import timm
    import torch

    arch, side, extra = MODELS[name]
    side = size or side
    if "img_size" in extra:  # a model that fixes its input side follows the one asked for
        extra = {**extra, "img_size": side}
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=100, **extra).eval()
    randomise_torch(model, seed)
    x = torch.from_numpy(seeded_array((batch, 3, side, side), seed))
    if name in CALIBRATED:
        calibrate_batchnorm(model, (x,))
    return model, (x,)


def export(name: str, out: Path, seed: int = 0, batch: int = 1, size: int | None = None
           ) -> Path:  # fmt: skip
    import timm
    import torch

    model, (x,) = build(name, seed, batch, size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=OPSET,
                          do_constant_folding=True, input_names=["input"],
                          output_names=["logits"])
    with torch.no_grad():
        y = model(x)
    meta = Meta(source="timm", opset=OPSET,
                exporter=f"torch.onnx.export(dynamo=False) torch {torch.__version__} "
                         f"timm {timm.__version__}")
    return write_export(out, name, buffer.getvalue(), {"input": x.numpy()},
                        {"logits": y.numpy()}, meta)


def _setup() -> None:
    import torch

    torch.set_num_threads(2)


if __name__ == "__main__":
    sys.exit(main(MODELS, export, __doc__.splitlines()[0], setup=_setup, resizable=True))
