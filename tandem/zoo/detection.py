"""Object detectors: YOLOv5s (v6.0 layout, exported with its decode) and SSD MobileNetV1."""

from __future__ import annotations

import numpy as np
import onnx

from tandem.zoo.builder import GraphBuilder
from tandem.zoo.classification import RESIDUAL_GAMMA

# ----- YOLOv5s -------------------------------------------------------------------------------
YOLO_CLASSES = 80
YOLO_STRIDES = (8, 16, 32)
# Anchor (w, h) pairs in pixels per output scale, from yolov5s.yaml.
YOLO_ANCHORS = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)


def _yolo_conv(
    g: GraphBuilder,
    x: str,
    cin: int,
    cout: int,
    k: int,
    s: int = 1,
    name: str = "conv",
    gamma: tuple[float, float] = (0.7, 1.3),
) -> str:
    """YOLOv5's ``Conv``: Conv2d (no bias) + BatchNorm + SiLU, exported as x * Sigmoid(x)."""
    y = g.conv(x, cin, cout, k, s, pad=k // 2 if k != 6 else 2, bias=False, name=f"{name}.conv")
    y = g.bn(y, cout, name=f"{name}.bn", gamma=gamma)
    return g.act(y, "silu", f"{name}.act")


def _c3(g: GraphBuilder, x: str, cin: int, cout: int, n: int, shortcut: bool, name: str) -> str:
    """CSP bottleneck with 3 convolutions: two 1x1 branches, n bottlenecks on one of them."""
    hidden = cout // 2
    a = _yolo_conv(g, x, cin, hidden, 1, name=f"{name}.cv1")
    b = _yolo_conv(g, x, cin, hidden, 1, name=f"{name}.cv2")
    for i in range(n):
        y = _yolo_conv(g, a, hidden, hidden, 1, name=f"{name}.m.{i}.cv1")
        gamma = RESIDUAL_GAMMA if shortcut else (0.7, 1.3)
        y = _yolo_conv(g, y, hidden, hidden, 3, name=f"{name}.m.{i}.cv2", gamma=gamma)
        a = g.op("Add", [a, y], f"{name}.m.{i}.add") if shortcut else y
    cat = g.concat([a, b], 1, f"{name}.concat")
    return _yolo_conv(g, cat, 2 * hidden, cout, 1, name=f"{name}.cv3")


def _sppf(g: GraphBuilder, x: str, cin: int, cout: int, name: str) -> str:
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools, concatenated."""
    hidden = cin // 2
    x = _yolo_conv(g, x, cin, hidden, 1, name=f"{name}.cv1")
    y1 = g.max_pool(x, 5, 1, 2, f"{name}.m")
    y2 = g.max_pool(y1, 5, 1, 2, f"{name}.m")
    y3 = g.max_pool(y2, 5, 1, 2, f"{name}.m")
    cat = g.concat([x, y1, y2, y3], 1, f"{name}.concat")
    return _yolo_conv(g, cat, 4 * hidden, cout, 1, name=f"{name}.cv2")


def _yolo_detect(
    g: GraphBuilder, features: list[tuple[str, int]], batch: int, resolution: int
) -> str:
    """Detect head as YOLOv5's export writes it: sigmoid, then grid/anchor decode, concat."""
    outputs = YOLO_CLASSES + 5
    decoded = []
    for i, ((x, cin), stride, anchors) in enumerate(zip(features, YOLO_STRIDES, YOLO_ANCHORS)):
        ny = nx = resolution // stride
        name = f"model.24.m.{i}"
        p = g.conv(x, cin, 3 * outputs, 1, name=name, gain=1.0)
        p = g.reshape(p, [batch, 3, outputs, ny, nx], f"{name}.reshape")
        p = g.transpose(p, [0, 1, 3, 4, 2], f"{name}.transpose")
        y = g.act(p, "sigmoid", f"{name}.sigmoid")
        xy, wh, conf = g.split(y, [2, 2, outputs - 4], 4, f"{name}.split")
        # grid holds cell offsets minus 0.5 (v6.0's centre convention), shape (1, 3, ny, nx, 2)
        yv, xv = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        grid = np.stack([xv, yv], -1)[None, None].repeat(3, axis=1).astype(np.float32) - 0.5
        anchor_grid = np.asarray(anchors, np.float32).reshape(1, 3, 1, 1, 2)
        anchor_grid = np.broadcast_to(anchor_grid, (1, 3, ny, nx, 2)).copy()
        xy = g.op("Mul", [xy, g.scalar(2.0, "two")], f"{name}.xy_mul2")
        xy = g.op("Add", [xy, g.const(grid, f"{name}.grid")], f"{name}.xy_add_grid")
        xy = g.op("Mul", [xy, g.scalar(float(stride), f"stride{stride}")], f"{name}.xy_stride")
        wh = g.op("Mul", [wh, g.scalar(2.0, "two")], f"{name}.wh_mul2")
        wh = g.op("Pow", [wh, g.scalar(2.0, "two")], f"{name}.wh_pow")
        wh = g.op("Mul", [wh, g.const(anchor_grid, f"{name}.anchor_grid")], f"{name}.wh_anchor")
        y = g.concat([xy, wh, conf], 4, f"{name}.cat")
        decoded.append(g.reshape(y, [batch, 3 * ny * nx, outputs], f"{name}.view"))
    return g.rename(g.concat(decoded, 1, "model.24.concat"), "output0")


def yolov5s(g: GraphBuilder, batch: int, resolution: int) -> onnx.ModelProto:
    """YOLOv5s v6.0: width multiple 0.50, depth multiple 0.33, 80 classes, 3 anchors/scale."""
    x = g.input("images", [batch, 3, resolution, resolution])
    # backbone
    x = _yolo_conv(g, x, 3, 32, 6, 2, name="model.0")  # 6x6/2 stem replaces Focus since v6.0
    x = _yolo_conv(g, x, 32, 64, 3, 2, name="model.1")
    x = _c3(g, x, 64, 64, 1, True, "model.2")
    x = _yolo_conv(g, x, 64, 128, 3, 2, name="model.3")
    p3 = _c3(g, x, 128, 128, 2, True, "model.4")
    x = _yolo_conv(g, p3, 128, 256, 3, 2, name="model.5")
    p4 = _c3(g, x, 256, 256, 3, True, "model.6")
    x = _yolo_conv(g, p4, 256, 512, 3, 2, name="model.7")
    x = _c3(g, x, 512, 512, 1, True, "model.8")
    x = _sppf(g, x, 512, 512, "model.9")
    # head: top-down (FPN) then bottom-up (PAN)
    h10 = _yolo_conv(g, x, 512, 256, 1, name="model.10")
    x = g.concat([g.resize_nearest(h10, 2.0, "model.11"), p4], 1, "model.12")
    x = _c3(g, x, 512, 256, 1, False, "model.13")
    h14 = _yolo_conv(g, x, 256, 128, 1, name="model.14")
    x = g.concat([g.resize_nearest(h14, 2.0, "model.15"), p3], 1, "model.16")
    out_p3 = _c3(g, x, 256, 128, 1, False, "model.17")
    x = _yolo_conv(g, out_p3, 128, 128, 3, 2, name="model.18")
    x = g.concat([x, h14], 1, "model.19")
    out_p4 = _c3(g, x, 256, 256, 1, False, "model.20")
    x = _yolo_conv(g, out_p4, 256, 256, 3, 2, name="model.21")
    x = g.concat([x, h10], 1, "model.22")
    out_p5 = _c3(g, x, 512, 512, 1, False, "model.23")
    features = [(out_p3, 128), (out_p4, 256), (out_p5, 512)]
    return g.build([_yolo_detect(g, features, batch, resolution)])


# ----- SSD MobileNetV1 -----------------------------------------------------------------------
SSD_CLASSES = 91  # COCO with background, as the TF object-detection API exports it
# (output channels, stride) of MobileNetV1's 13 depthwise-separable blocks.
MOBILENETV1_BLOCKS = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
]
# Extra feature layers: (1x1 bottleneck channels, 3x3/2 output channels).
SSD_EXTRAS = [(256, 512), (128, 256), (128, 256), (64, 128)]
SSD_ANCHORS = [3, 6, 6, 6, 6, 6]


def _conv_bn_relu6(
    g: GraphBuilder,
    x: str,
    cin: int,
    cout: int,
    k: int,
    s: int = 1,
    group: int = 1,
    name: str = "conv",
) -> str:
    y = g.conv(x, cin, cout, k, s, group=group, bias=False, name=name)
    return g.act(g.bn(y, cout, name=f"{name}.bn"), "relu6", f"{name}.relu6")


def ssd_mobilenet(g: GraphBuilder, batch: int, resolution: int) -> onnx.ModelProto:
    x = g.input("input", [batch, 3, resolution, resolution])
    x = _conv_bn_relu6(g, x, 3, 32, 3, 2, name="backbone.0")
    cin = 32
    features: list[tuple[str, int]] = []
    for i, (cout, stride) in enumerate(MOBILENETV1_BLOCKS, start=1):
        x = _conv_bn_relu6(g, x, cin, cin, 3, stride, group=cin, name=f"backbone.{i}.dw")
        x = _conv_bn_relu6(g, x, cin, cout, 1, name=f"backbone.{i}.pw")
        cin = cout
        if i in (11, 13):  # stride-16 and stride-32 maps feed the first two heads
            features.append((x, cout))
    for i, (mid, cout) in enumerate(SSD_EXTRAS):
        x = _conv_bn_relu6(g, x, cin, mid, 1, name=f"extras.{i}.0")
        x = _conv_bn_relu6(g, x, mid, cout, 3, 2, name=f"extras.{i}.1")
        cin = cout
        features.append((x, cout))
    scores: list[str] = []
    boxes: list[str] = []
    for i, ((f, channels), anchors) in enumerate(zip(features, SSD_ANCHORS)):
        for kind, per_anchor, out in (("cls", SSD_CLASSES, scores), ("box", 4, boxes)):
            name = f"head.{kind}.{i}"
            y = g.conv(f, channels, anchors * per_anchor, 1, name=name, gain=1.0)
            y = g.transpose(y, [0, 2, 3, 1], f"{name}.permute")
            out.append(g.reshape(y, [batch, -1, per_anchor], f"{name}.reshape"))
    logits = g.concat(scores, 1, "head.cls.concat")
    probs = g.rename(g.op("Softmax", [logits], "head.cls.softmax", axis=-1), "scores")
    box = g.rename(g.concat(boxes, 1, "head.box.concat"), "boxes")
    return g.build([probs, box])
