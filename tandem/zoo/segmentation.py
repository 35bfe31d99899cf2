"""Segmentation: a small U-Net (encoder / decoder, ConvTranspose upsampling, skip Concat)."""

from __future__ import annotations

import onnx

from tandem.zoo.builder import GraphBuilder

UNET_BASE = 16
UNET_LEVELS = 4  # four 2x2 max-pools: the resolution must be a multiple of 16
UNET_CLASSES = 3


def _double_conv(g: GraphBuilder, x: str, cin: int, cout: int, name: str) -> str:
    for i, c in enumerate((cin, cout)):
        x = g.conv(x, c, cout, 3, bias=False, name=f"{name}.conv{i + 1}")
        x = g.act(g.bn(x, cout, name=f"{name}.bn{i + 1}"), "relu", f"{name}.relu{i + 1}")
    return x


def unet_small(g: GraphBuilder, batch: int, resolution: int) -> onnx.ModelProto:
    x = g.input("input", [batch, 3, resolution, resolution])
    skips: list[tuple[str, int]] = []
    cin = 3
    for level in range(UNET_LEVELS):
        cout = UNET_BASE * 2**level
        x = _double_conv(g, x, cin, cout, f"down{level + 1}")
        skips.append((x, cout))
        x = g.max_pool(x, 2, 2, name=f"pool{level + 1}")
        cin = cout
    x = _double_conv(g, x, cin, 2 * cin, "bottleneck")
    cin *= 2
    for level, (skip, channels) in enumerate(reversed(skips)):
        name = f"up{level + 1}"
        x = g.conv_transpose(x, cin, channels, 2, 2, name=f"{name}.deconv")
        x = g.concat([skip, x], 1, f"{name}.concat")
        x = _double_conv(g, x, 2 * channels, channels, name)
        cin = channels
    logits = g.conv(x, cin, UNET_CLASSES, 1, name="head", gain=1.0)
    return g.build([g.rename(logits, "logits")])
