"""Image classifiers: ResNet-18/50 and MobileNetV2 / V3-Small, torchvision's topologies."""

from __future__ import annotations

import onnx

from tandem.zoo.builder import GraphBuilder

# The last BatchNorm of a residual branch gets a small gamma (trained ResNets have the same
# shape): without it the residual stream's variance doubles per block and the logits blow up.
RESIDUAL_GAMMA = (0.2, 0.5)


def _conv_bn(
    g: GraphBuilder,
    x: str,
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    group: int = 1,
    act: str | None = "relu",
    name: str = "conv",
    gamma: tuple[float, float] = (0.7, 1.3),
) -> str:
    y = g.conv(x, cin, cout, kernel, stride, group=group, bias=False, name=name)
    y = g.bn(
        y, cout, name=name.replace("conv", "bn") if "conv" in name else f"{name}.bn", gamma=gamma
    )
    return g.act(y, act, name=f"{name}.{act}") if act else y


def _classifier(g: GraphBuilder, x: str, channels: int, classes: int = 1000) -> str:
    pooled = g.flatten(g.global_avg_pool(x, "avgpool"), "flatten")
    return g.rename(g.gemm(pooled, channels, classes, "fc"), "logits")


# ----- ResNet --------------------------------------------------------------------------------
def _basic_block(g: GraphBuilder, x: str, cin: int, cout: int, stride: int, name: str) -> str:
    y = _conv_bn(g, x, cin, cout, 3, stride, name=f"{name}.conv1")
    y = _conv_bn(g, y, cout, cout, 3, 1, act=None, name=f"{name}.conv2", gamma=RESIDUAL_GAMMA)
    if stride != 1 or cin != cout:
        x = _conv_bn(g, x, cin, cout, 1, stride, act=None, name=f"{name}.downsample.0")
    return g.act(g.op("Add", [y, x], f"{name}.add"), "relu", f"{name}.relu")


def _bottleneck(g: GraphBuilder, x: str, cin: int, width: int, stride: int, name: str) -> str:
    cout = width * 4
    y = _conv_bn(g, x, cin, width, 1, 1, name=f"{name}.conv1")
    y = _conv_bn(g, y, width, width, 3, stride, name=f"{name}.conv2")  # v1.5: stride on the 3x3
    y = _conv_bn(g, y, width, cout, 1, 1, act=None, name=f"{name}.conv3", gamma=RESIDUAL_GAMMA)
    if stride != 1 or cin != cout:
        x = _conv_bn(g, x, cin, cout, 1, stride, act=None, name=f"{name}.downsample.0")
    return g.act(g.op("Add", [y, x], f"{name}.add"), "relu", f"{name}.relu")


def _resnet(g: GraphBuilder, x: str, blocks: list[int], bottleneck: bool) -> str:
    x = _conv_bn(g, x, 3, 64, 7, 2, name="conv1")
    x = g.max_pool(x, 3, 2, 1, "maxpool")
    cin = 64
    for stage, count in enumerate(blocks):
        width = 64 * 2**stage
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            name = f"layer{stage + 1}.{i}"
            if bottleneck:
                x = _bottleneck(g, x, cin, width, stride, name)
                cin = width * 4
            else:
                x = _basic_block(g, x, cin, width, stride, name)
                cin = width
    return _classifier(g, x, cin)


def resnet18(g: GraphBuilder, batch: int, resolution: int) -> onnx.ModelProto:
    x = g.input("input", [batch, 3, resolution, resolution])
    return g.build([_resnet(g, x, [2, 2, 2, 2], bottleneck=False)])


def resnet50(g: GraphBuilder, batch: int, resolution: int) -> onnx.ModelProto:
    x = g.input("input", [batch, 3, resolution, resolution])
    return g.build([_resnet(g, x, [3, 4, 6, 3], bottleneck=True)])


# ----- MobileNetV2 ---------------------------------------------------------------------------
# (expansion t, output channels c, repeats n, first stride s), from the paper's table 2.
MOBILENETV2_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _inverted_residual(
    g: GraphBuilder, x: str, cin: int, cout: int, stride: int, expand: int, name: str
) -> str:
    hidden = cin * expand
    y = x
    if expand != 1:
        y = _conv_bn(g, y, cin, hidden, 1, act="relu6", name=f"{name}.expand.conv")
    y = _conv_bn(g, y, hidden, hidden, 3, stride, group=hidden, act="relu6", name=f"{name}.dw.conv")
    gamma = RESIDUAL_GAMMA if stride == 1 and cin == cout else (0.7, 1.3)
    y = _conv_bn(g, y, hidden, cout, 1, act=None, name=f"{name}.project.conv", gamma=gamma)
    if stride == 1 and cin == cout:
        y = g.op("Add", [x, y], f"{name}.add")
    return y


def mobilenetv2(g: GraphBuilder, batch: int, resolution: int) -> onnx.ModelProto:
    x = g.input("input", [batch, 3, resolution, resolution])
    x = _conv_bn(g, x, 3, 32, 3, 2, act="relu6", name="features.0.conv")
    cin, index = 32, 1
    for t, c, n, s in MOBILENETV2_SETTINGS:
        for i in range(n):
            x = _inverted_residual(g, x, cin, c, s if i == 0 else 1, t, f"features.{index}")
            cin, index = c, index + 1
    x = _conv_bn(g, x, cin, 1280, 1, act="relu6", name=f"features.{index}.conv")
    return g.build([_classifier(g, x, 1280)])


# ----- MobileNetV3-Small ---------------------------------------------------------------------
# (kernel, expanded channels, output channels, squeeze-excite, activation, stride): table 2 of
# "Searching for MobileNetV3", as torchvision builds it.
MOBILENETV3_SMALL_SETTINGS = [
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", 2),
    (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", 2),
    (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _squeeze_excite(g: GraphBuilder, x: str, channels: int, name: str) -> str:
    squeeze = make_divisible(channels // 4)
    s = g.global_avg_pool(x, f"{name}.avgpool")
    s = g.act(g.conv(s, channels, squeeze, 1, name=f"{name}.fc1"), "relu", f"{name}.relu")
    s = g.conv(s, squeeze, channels, 1, name=f"{name}.fc2", gain=1.0)
    return g.op("Mul", [x, g.act(s, "hardsigmoid", f"{name}.hardsigmoid")], f"{name}.scale")


def mobilenetv3_small(g: GraphBuilder, batch: int, resolution: int) -> onnx.ModelProto:
    x = g.input("input", [batch, 3, resolution, resolution])
    x = _conv_bn(g, x, 3, 16, 3, 2, act="hardswish", name="features.0.conv")
    cin = 16
    for index, (k, exp, cout, se, act, s) in enumerate(MOBILENETV3_SMALL_SETTINGS, start=1):
        name = f"features.{index}"
        y = x
        if exp != cin:
            y = _conv_bn(g, y, cin, exp, 1, act=act, name=f"{name}.expand.conv")
        y = _conv_bn(g, y, exp, exp, k, s, group=exp, act=act, name=f"{name}.dw.conv")
        if se:
            y = _squeeze_excite(g, y, exp, f"{name}.se")
        residual = s == 1 and cin == cout
        gamma = RESIDUAL_GAMMA if residual else (0.7, 1.3)
        y = _conv_bn(g, y, exp, cout, 1, act=None, name=f"{name}.project.conv", gamma=gamma)
        x = g.op("Add", [x, y], f"{name}.add") if residual else y
        cin = cout
    x = _conv_bn(g, x, cin, 576, 1, act="hardswish", name="features.12.conv")
    x = g.flatten(g.global_avg_pool(x, "avgpool"), "flatten")
    x = g.act(g.gemm(x, 576, 1024, "classifier.0"), "hardswish", "classifier.1")
    return g.build([g.rename(g.gemm(x, 1024, 1000, "classifier.3"), "logits")])
