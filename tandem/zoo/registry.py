"""The zoo's catalogue: which models exist, what resolutions they take, and ``build_model``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx

from tandem.zoo import classification, detection, segmentation, transformer
from tandem.zoo.builder import MAX_OPSET, MIN_OPSET, GraphBuilder, ZooError


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry. ``resolution`` is the default input height = width."""

    description: str
    resolution: int
    build: Callable[..., onnx.ModelProto]
    multiple: int = 1  # the resolution must be a multiple of this (the network's total stride)
    min_resolution: int = 32
    min_opset: int = MIN_OPSET
    options: tuple[str, ...] = ()  # extra keyword options the builder accepts (e.g. vit depth)
    test_resolution: int = 64  # a small resolution that keeps tests fast


ZOO_MODELS: dict[str, ZooModel] = {
    "resnet18": ZooModel(
        "ResNet-18 (torchvision): 7x7/2 stem, max-pool, 8 basic blocks, GAP, FC 1000",
        224,
        classification.resnet18,
        multiple=32,
    ),
    "resnet50": ZooModel(
        "ResNet-50 v1.5 (torchvision): 16 bottleneck blocks, 1x1 downsample, GAP, FC 1000",
        224,
        classification.resnet50,
        multiple=32,
    ),
    "mobilenetv2": ZooModel(
        "MobileNetV2: inverted residuals, depthwise 3x3, ReLU6 as Clip(0, 6), FC 1000",
        224,
        classification.mobilenetv2,
        multiple=32,
    ),
    "mobilenetv3-small": ZooModel(
        "MobileNetV3-Small: HardSwish, squeeze-excite with HardSigmoid gates, FC 1024/1000",
        224,
        classification.mobilenetv3_small,
        multiple=32,
    ),
    "yolov5s": ZooModel(
        "YOLOv5s v6 (w 0.50, d 0.33, 80 classes): 6x6/2 stem, C3, SiLU, SPPF, FPN/PAN, "
        "decoded detect head (b, anchors, 85)",
        640,
        detection.yolov5s,
        multiple=32,
    ),
    "ssd-mobilenet": ZooModel(
        "SSD MobileNetV1 (91 classes): depthwise-separable backbone, 4 extra layers, "
        "6-scale class/box heads (b, anchors, 91) + (b, anchors, 4)",
        300,
        detection.ssd_mobilenet,
        min_resolution=64,
    ),
    "unet-small": ZooModel(
        "U-Net (base 16 channels, 4 levels): double conv, max-pool, ConvTranspose 2x2/2, "
        "skip Concat, 1x1 head to 3 classes",
        256,
        segmentation.unet_small,
        multiple=16,
    ),
    "vit-tiny": ZooModel(
        "ViT-Tiny/16: patch conv 16x16/16, class token, position embedding, 12 blocks of "
        "dim 192 with 3 heads, LayerNorm, GELU MLP, head 1000",
        224,
        transformer.vit_tiny,
        multiple=16,
        min_resolution=16,
        options=("depth",),
    ),
}


def build_model(
    name: str,
    batch: int = 1,
    resolution: int | None = None,
    seed: int = 0,
    opset: int = 17,
    **options: Any,
) -> onnx.ModelProto:
    """Build zoo model ``name`` with seeded weights; it passes ``onnx.checker`` (full check).

    ``resolution`` is the input height and width (the model's default when None). ``options``
    are model-specific (``depth`` for ``vit-tiny``). Raises :class:`ZooError` on a bad request.
    """
    spec = ZOO_MODELS.get(name)
    if spec is None:
        raise ZooError(f"unknown zoo model '{name}'; known models: {', '.join(ZOO_MODELS)}")
    resolution = spec.resolution if resolution is None else resolution
    if not isinstance(batch, int) or batch < 1:
        raise ZooError(f"zoo model '{name}': batch must be a positive integer, got {batch!r}")
    if not isinstance(resolution, int) or resolution < spec.min_resolution:
        raise ZooError(
            f"zoo model '{name}': resolution must be an integer >= {spec.min_resolution}, "
            f"got {resolution!r}"
        )
    if resolution % spec.multiple:
        lower = resolution // spec.multiple * spec.multiple
        raise ZooError(
            f"zoo model '{name}': resolution must be a multiple of {spec.multiple} (its total "
            f"stride), got {resolution}; try {max(lower, spec.min_resolution)} or "
            f"{lower + spec.multiple}"
        )
    low = max(MIN_OPSET, spec.min_opset)
    if not isinstance(opset, int) or not low <= opset <= MAX_OPSET:
        raise ZooError(
            f"zoo model '{name}': opset must be between {low} and {MAX_OPSET}, got {opset!r}"
        )
    if not isinstance(seed, int) or seed < 0:
        raise ZooError(f"zoo model '{name}': seed must be a non-negative integer, got {seed!r}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        takers = [n for n, m in ZOO_MODELS.items() if set(unknown) & set(m.options)]
        hint = f" (only {', '.join(takers)} takes it)" if takers else ""
        raise ZooError(f"zoo model '{name}' takes no option {', '.join(unknown)}{hint}")
    builder = GraphBuilder(name, seed=seed, opset=opset)
    return spec.build(builder, batch, resolution, **options)
