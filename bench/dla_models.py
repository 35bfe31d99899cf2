"""The networks behind the published DLA figures (``dla_sim/data/published.yaml``), in torch.

torchvision is not installed, so its architectures are written out here (seeded random weights:
latency does not depend on the values). Each builder reproduces the graph that was *timed*, i.e.
after the preparation the publisher applied (for NVIDIA's DLA reference models,
``scripts/prepare_models/*.py`` of https://github.com/NVIDIA/Deep-Learning-Accelerator-SW):
post-processing cut off, sibling head convolutions fused horizontally, FC as 1x1 convolution.

``graph(name, **kw)`` exports one to ONNX (TorchScript exporter, opset 17), imports it and runs the
project's simplification passes (BatchNorm folded), memoised per arguments.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from devices.cpu import evaluate_node
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from partitioner.passes.pipeline import simplify


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


class BasicBlock(nn.Module):
    """torchvision's ResNet-18/34 block."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, groups: int = 1, base: int = 64) -> None:
        super().__init__()
        self.a = _conv_bn(cin, width, 3, stride)
        self.b = _conv_bn(width, width, 3)
        self.down = _conv_bn(cin, width, 1, stride) if stride != 1 or cin != width else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.down is None else self.down(x)
        return torch.relu(self.b(torch.relu(self.a(x))) + skip)


class Bottleneck(nn.Module):
    """torchvision's v1.5 bottleneck (stride on the 3x3); ResNeXt when ``groups`` > 1."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, groups: int = 1, base: int = 64) -> None:
        super().__init__()
        mid = int(width * base / 64) * groups
        out = width * 4
        self.a = _conv_bn(cin, mid, 1)
        self.b = _conv_bn(mid, mid, 3, stride, groups)
        self.c = _conv_bn(mid, out, 1)
        self.down = _conv_bn(cin, out, 1, stride) if stride != 1 or cin != out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.down is None else self.down(x)
        y = torch.relu(self.b(torch.relu(self.a(x))))
        return torch.relu(self.c(y) + skip)


class ResNet(nn.Module):
    """torchvision ResNet trunk; ``forward`` returns the outputs of layer1..layer4 that exist.

    ``layer3_stride`` 1 is MLPerf's SSD-ResNet-34 backbone (conv4_x block 1 stride 1)."""

    def __init__(
        self,
        block: Any,
        blocks: list[int],
        groups: int = 1,
        base: int = 64,
        layer3_stride: int = 2,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )  # fmt: skip
        layers, cin = [], 64
        strides = [1, 2, layer3_stride, 2]
        for i, n in enumerate(blocks):
            width = 64 * 2**i
            stage = []
            for j in range(n):
                stage.append(block(cin, width, strides[i] if j == 0 else 1, groups, base))
                cin = width * block.expansion
            layers.append(nn.Sequential(*stage))
        self.layers = nn.ModuleList(layers)
        self.channels = [64 * 2**i * block.expansion for i in range(len(blocks))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


class ResNet50Prepared(nn.Module):
    """MLPerf ResNet-50 v1.5 as NVIDIA prepared it for the DLA (resnet50.py): the mean becomes
    a 7x7 average pool and the 1001-way dense layer a 1x1 convolution; ArgMax/Softmax cut."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = ResNet(Bottleneck, [3, 4, 6, 3])
        self.pool = nn.AvgPool2d(7)
        self.fc = nn.Conv2d(2048, 1001, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.trunk(x)[-1]))


class ResNet34Backbone(nn.Module):
    """``backbone_rn34_1280x768_dummy.onnx``: ResNet-34 without its classifier (layer4 out)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = ResNet(BasicBlock, [3, 4, 6, 3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)[-1]


class RetinaNet(nn.Module):
    """torchvision-style RetinaNet: FPN on C3..C5 (P6 from P5, P7 from P6, 256 channels), heads of
    4 x (3x3 conv 256 + ReLU) then a 3x3 predictor per level, anchors 9; decoding/NMS cut."""

    def __init__(self, trunk: ResNet, classes: int, anchors: int = 9) -> None:
        super().__init__()
        self.trunk = trunk
        c3, c4, c5 = trunk.channels[1:]
        self.lateral = nn.ModuleList(nn.Conv2d(c, 256, 1) for c in (c3, c4, c5))
        self.smooth = nn.ModuleList(nn.Conv2d(256, 256, 3, 1, 1) for _ in range(3))
        self.p6 = nn.Conv2d(256, 256, 3, 2, 1)  # from P5 (torchvision LastLevelP6P7(256, 256))
        self.p7 = nn.Conv2d(256, 256, 3, 2, 1)

        def head(outputs: int) -> nn.Sequential:
            convs: list[nn.Module] = []
            for _ in range(4):
                convs += [nn.Conv2d(256, 256, 3, 1, 1), nn.ReLU()]
            return nn.Sequential(*convs, nn.Conv2d(256, outputs, 3, 1, 1))

        self.cls = head(anchors * classes)
        self.box = head(anchors * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _, c3, c4, c5 = self.trunk(x)
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + nn.functional.interpolate(p5, scale_factor=2.0, mode="nearest")
        p3 = self.lateral[0](c3) + nn.functional.interpolate(p4, scale_factor=2.0, mode="nearest")
        levels = [self.smooth[0](p3), self.smooth[1](p4), self.smooth[2](p5)]
        p6 = self.p6(levels[2])
        levels += [p6, self.p7(torch.relu(p6))]
        return tuple(self.cls(p) for p in levels) + tuple(self.box(p) for p in levels)


class SsdResNet34(nn.Module):
    """MLPerf SSD-ResNet-34 1200x1200 (mlcommons/inference ssd_r34.py, strides [3,3,2,2,2,2]):
    ResNet-34 to conv4_x with stride 1, five extra blocks, loc/conf 3x3 heads (stride 3 on every
    source), 81 classes; NVIDIA's ssd_resnet34.py fuses each loc/conf pair into one conv."""

    def __init__(self) -> None:
        super().__init__()
        trunk = ResNet(BasicBlock, [3, 4, 6], layer3_stride=1)
        self.trunk = trunk
        chans = [256, 512, 512, 256, 256, 256]
        mids = [256, 256, 128, 128, 128]
        strides = [2, 2, 2, 2, 1]
        pads = [1, 1, 1, 0, 0]
        self.extra = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(chans[i], mids[i], 1), nn.ReLU(),
                nn.Conv2d(mids[i], chans[i + 1], 3, strides[i], pads[i]), nn.ReLU(),
            )
            for i in range(5)
        )  # fmt: skip
        defaults = [4, 6, 6, 6, 4, 4]
        self.heads = nn.ModuleList(
            nn.Conv2d(c, d * (4 + 81), 3, 3, 1) for c, d in zip(chans, defaults, strict=True)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        src = [self.trunk(x)[-1]]
        for block in self.extra:
            src.append(block(src[-1]))
        return tuple(h(s) for h, s in zip(self.heads, src, strict=True))


class SsdMobileNetV1(nn.Module):
    """MLPerf SSD-MobileNetV1 300x300 (TF object-detection export, 91 classes): depthwise-separable
    backbone with ReLU6, extra 1x1/3x3-s2 layers, 1x1 box/class predictors on 6 maps (3 anchors on
    the first, 6 elsewhere), each pair fused horizontally as ssd_mobilenetv1.py does."""

    def __init__(self) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, k: int, s: int = 1, g: int = 1) -> nn.Sequential:
            return nn.Sequential(_conv_bn(cin, cout, k, s, g), nn.ReLU6())

        cfg = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
               (256, 512, 2)] + [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]  # fmt: skip
        layers = [cbr(3, 32, 3, 2)]
        for cin, cout, s in cfg:
            layers += [cbr(cin, cin, 3, s, cin), cbr(cin, cout, 1)]
        self.backbone = nn.ModuleList(layers)
        self.taps = {len(layers) - 5, len(layers) - 1}  # conv11 (19x19) and conv13 (10x10)
        extra = [(1024, 256, 512), (512, 128, 256), (256, 128, 256), (256, 64, 128)]
        self.extra = nn.ModuleList(
            nn.Sequential(cbr(cin, mid, 1), cbr(mid, cout, 3, 2)) for cin, mid, cout in extra
        )
        chans = [512, 1024, 512, 256, 256, 128]
        anchors = [3, 6, 6, 6, 6, 6]
        self.heads = nn.ModuleList(
            nn.Conv2d(c, a * (4 + 91), 1) for c, a in zip(chans, anchors, strict=True)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        src = []
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in self.taps:
                src.append(x)
        for block in self.extra:
            x = block(x)
            src.append(x)
        return tuple(h(s) for h, s in zip(self.heads, src, strict=True))


class _LrnOp(torch.autograd.Function):
    """Cross-channel LRN exported as the ONNX LRN op (torch writes a decomposition with If)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return nn.functional.local_response_norm(x, 5, 1e-4, 0.75)

    @staticmethod
    def symbolic(g: Any, x: Any) -> Any:
        return g.op("LRN", x, size_i=5, alpha_f=1e-4, beta_f=0.75, bias_f=1.0)


class Lrn(nn.Module):
    """Caffe's LRN (local_size 5, alpha 1e-4, beta 0.75, across channels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LrnOp.apply(x)


class Inception(nn.Module):
    """GoogLeNet (BVLC Caffe) inception module: 1x1 | 1x1-3x3 | 1x1-5x5 | pool3x3-1x1, ReLUs."""

    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, cp: int) -> None:
        super().__init__()

        def cr(a: int, b: int, k: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, k, 1, k // 2), nn.ReLU())

        self.b1 = cr(cin, c1, 1)
        self.b3 = nn.Sequential(cr(cin, r3, 1), cr(r3, c3, 3))
        self.b5 = nn.Sequential(cr(cin, r5, 1), cr(r5, c5, 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), cr(cin, cp, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class GoogLeNet(nn.Module):
    """BVLC GoogLeNet (HaX-CoNN's prototxt_input_files/googlenet.prototxt): LRN after pool1 and
    conv2, 9 inception modules, 7x7 average pool, FC 1000 (the Softmax 'prob' ran on the GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
            Lrn(), nn.Conv2d(64, 64, 1), nn.ReLU(),
            nn.Conv2d(64, 192, 3, 1, 1), nn.ReLU(), Lrn(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
        )  # fmt: skip
        spec = [
            (192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), "pool",
            (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
            (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
            (528, 256, 160, 320, 32, 128, 128), "pool",
            (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128),
        ]  # fmt: skip
        self.body = nn.Sequential(
            *(nn.MaxPool2d(3, 2, ceil_mode=True) if s == "pool" else Inception(*s) for s in spec)
        )
        self.pool = nn.AvgPool2d(7)
        self.fc = nn.Linear(1024, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.body(self.stem(x))), 1))


class TutorialNet(nn.Module):
    """jetson_dla_tutorial's CIFAR-10 model: 4 x (3x3/2 conv, norm, ReLU), global average pool,
    FC 10. ``group_norm`` True is ModelGN (GroupNorm(8): not on the DLA), False is ModelBN."""

    def __init__(self, group_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in ((3, 64), (64, 128), (128, 256), (256, 512)):
            norm = nn.GroupNorm(8, cout) if group_norm else nn.BatchNorm2d(cout)
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), norm, nn.ReLU()]
        self.cnn = nn.Sequential(*layers)
        self.linear = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.cnn(x), 1)
        return self.linear(x.view(x.shape[0], -1))


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "resnet50": ResNet50Prepared,
    "resnet34-backbone": ResNet34Backbone,
    "retinanet-resnet34": lambda: RetinaNet(ResNet(BasicBlock, [3, 4, 6, 3]), classes=3),
    "retinanet-resnext50": lambda: RetinaNet(
        ResNet(Bottleneck, [3, 4, 6, 3], groups=32, base=4), classes=264
    ),
    "ssd-resnet34": SsdResNet34,
    "ssd-mobilenetv1": SsdMobileNetV1,
    "googlenet": GoogLeNet,
    "tutorial-gn": lambda: TutorialNet(group_norm=True),
    "tutorial-bn": lambda: TutorialNet(group_norm=False),
}


def onnx_bytes(name: str, batch: int, height: int, width: int, seed: int = 0) -> bytes:
    """The network ``name`` exported to ONNX (eval mode, seeded weights, static shapes)."""
    torch.manual_seed(seed)
    module = BUILDERS[name]().eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module,
            (torch.zeros(batch, 3, height, width),),
            buf,
            input_names=["input"],
            opset_version=17,
            dynamo=False,
        )
    return buf.getvalue()


@functools.cache
def graph(name: str, batch: int, height: int, width: int) -> Graph:
    """``name`` as Tandem's IR after the simplification passes (what the partitioner sees)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes(name, batch, height, width))
    return simplify(import_onnx(model), evaluate_node)
