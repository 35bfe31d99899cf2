"""PaddlePaddle models in the shapes PaddleOCR / PaddleClas ship (text recognizers, a DB text
detector, a PP-LCNet classifier, a "same"-padded net with instance / group norm), seeded, saved
with ``paddle.jit.save`` and exported by ``paddle2onnx`` -- the path Paddle users take to ONNX.

Runs in ``.venv-paddle`` (paddle2onnx pins its own onnx; no torch there):
``python tests/conformance/export_paddle.py --list`` / ``--out DIR [NAME ...]``.

The input specs are the ones those projects export with: dynamic (``None``) batch and spatial
dims, so the files carry the Shape -> Gather -> Cast -> Concat -> Reshape chains that compute
sizes at run time. Meta.dims names each dynamic input dim as paddle2onnx wrote
it, with the value the saved input gives it. Opset 11 (PaddleOCR's deployment docs) for the
OCR models; 16 and 17 for the other two.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_common import Meta, main, write_export  # noqa: E402

# paddle is imported lazily, so `--list` stays fast
paddle: Any = None
nn: Any = None
F: Any = None


def _import() -> None:
    global paddle, nn, F
    import paddle as _paddle
    import paddle.nn.functional as _F
    from paddle import nn as _nn

    paddle, nn, F = _paddle, _nn, _F
    paddle.set_device("cpu")


def conv_bn(cin: int, cout: int, k: int, s: Any = 1, groups: int = 1, act: str | None = "hswish"):
    layers = [nn.Conv2D(cin, cout, k, s, k // 2, groups=groups, bias_attr=False),
              nn.BatchNorm2D(cout)]
    if act == "hswish":
        layers.append(nn.Hardswish())
    elif act == "relu":
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _se(channels: int) -> Any:
    class SE(nn.Layer):
        """PaddleOCR / PP-LCNet squeeze-excite: GAP, 1x1 convs, hardsigmoid(0.2, 0.5) gate."""

        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2D(1)
            self.fc1 = nn.Conv2D(channels, channels // 4, 1)
            self.fc2 = nn.Conv2D(channels // 4, channels, 1)

        def forward(self, x):
            s = F.relu(self.fc1(self.pool(x)))
            return x * F.hardsigmoid(self.fc2(s), slope=0.2, offset=0.5)

    return SE()


def _dw_sep(cin: int, cout: int, k: int, s: Any, se: bool) -> Any:
    """PP-LCNet's DepthwiseSeparable: depthwise kxk (BN, hardswish), optional SE, pointwise."""
    layers = [conv_bn(cin, cin, k, s, groups=cin)]
    if se:
        layers.append(_se(cin))
    layers.append(conv_bn(cin, cout, 1))
    return nn.Sequential(*layers)


# ----- models -----------------------------------------------------------------------------------
def pplcnet() -> Any:
    class PPLCNet(nn.Layer):
        """PP-LCNet x0.25's layout (stem, depthwise-separable stages, 5x5 + SE at the end, GAP,
        1x1 "last conv" with hardswish, FC), shrunk."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = conv_bn(3, 8, 3, 2)
            cfg = [(8, 16, 3, 1, False), (16, 32, 3, 2, False), (32, 32, 3, 1, False),
                   (32, 64, 3, 2, False), (64, 64, 5, 1, False), (64, 128, 5, 2, True),
                   (128, 128, 5, 1, True)]
            self.blocks = nn.Sequential(*[_dw_sep(*c) for c in cfg])
            self.pool = nn.AdaptiveAvgPool2D(1)
            self.last_conv = nn.Conv2D(128, 256, 1)
            self.fc = nn.Linear(256, 100)

        def forward(self, x):
            x = self.pool(self.blocks(self.stem(x)))
            x = F.hardswish(self.last_conv(x))
            return F.softmax(self.fc(paddle.flatten(x, 1)), axis=-1)  # PaddleClas exports softmax

        def logits_layer(self):
            return self.fc

    return PPLCNet()


def _rec_backbone() -> Any:
    # PP-OCR rec backbones stride height more than width: (2,1) strides keep the text columns
    return nn.Sequential(conv_bn(3, 16, 3, 2), _dw_sep(16, 32, 3, 1, False),
                         _dw_sep(32, 48, 3, (2, 1), False), _dw_sep(48, 64, 3, (2, 1), True),
                         _dw_sep(64, 64, 3, (2, 1), True))


def svtr_rec() -> Any:
    class SVTRRec(nn.Layer):
        """PP-OCRv3-style recognizer: conv backbone, an SVTR global mixer (attention over all
        h*w positions; flatten and reshape back use the run-time h, w), pooling over height,
        CTC head with softmax."""

        def __init__(self, classes: int = 97) -> None:
            super().__init__()
            self.backbone = _rec_backbone()
            self.norm1 = nn.LayerNorm(64)
            self.attn = nn.MultiHeadAttention(64, 4)
            self.norm2 = nn.LayerNorm(64)
            self.mlp = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
            self.head = nn.Linear(64, classes)

        def forward(self, x):
            x = self.backbone(x)
            h, w = x.shape[2], x.shape[3]  # dynamic: Shape -> Gather at export
            t = x.flatten(2).transpose([0, 2, 1])  # [B, h*w, C]
            y = self.norm1(t)
            t = t + self.attn(y, y, y)
            t = t + self.mlp(self.norm2(t))
            x = t.transpose([0, 2, 1]).reshape([-1, 64, h, w])
            x = x.mean(axis=2).transpose([0, 2, 1])  # [B, w, C]: one step per text column
            return F.softmax(self.head(x), axis=-1)

        def logits_layer(self):
            return self.head

    return SVTRRec()


def crnn_rec() -> Any:
    class CRNN(nn.Layer):
        """PP-OCRv2-style CRNN: conv backbone, max-pool the height away, BiLSTM over the
        columns, CTC head with softmax."""

        def __init__(self, classes: int = 97) -> None:
            super().__init__()
            self.backbone = _rec_backbone()
            self.lstm = nn.LSTM(64, 48, num_layers=1, direction="bidirect")
            self.head = nn.Linear(96, classes)

        def forward(self, x):
            x = self.backbone(x)
            x = x.max(axis=2).transpose([0, 2, 1])  # [B, w, C]
            x, _ = self.lstm(x)
            return F.softmax(self.head(x), axis=-1)

        def logits_layer(self):
            return self.head

    return CRNN()


def db_det() -> Any:
    class DBDet(nn.Layer):
        """DB text detector (PP-OCR det): MobileNetV3-ish backbone, FPN whose upsampling sizes
        come from the run-time feature shapes (the input H, W are dynamic), probability head
        with two 2x2/2 transposed convs."""

        logit_std = 1.0  # a Sigmoid probability map

        def __init__(self) -> None:
            super().__init__()
            self.stem = conv_bn(3, 16, 3, 2)
            widths = [24, 40, 48, 96]
            self.stages = nn.LayerList([_dw_sep(16, 24, 3, 2, False), _dw_sep(24, 40, 5, 2, True),
                                        _dw_sep(40, 48, 5, 2, True), _dw_sep(48, 96, 5, 2, True)])
            self.lateral = nn.LayerList([nn.Conv2D(w, 64, 1, bias_attr=False) for w in widths])
            self.smooth = nn.LayerList([nn.Conv2D(64, 16, 3, padding=1, bias_attr=False)
                                        for _ in widths])
            self.head = nn.Sequential(conv_bn(64, 16, 3, act="relu"),
                                      nn.Conv2DTranspose(16, 16, 2, 2), nn.BatchNorm2D(16),
                                      nn.ReLU(), nn.Conv2DTranspose(16, 1, 2, 2), nn.Sigmoid())

        def forward(self, x):
            x = self.stem(x)
            feats = []
            for stage in self.stages:
                x = stage(x)
                feats.append(x)
            lat = [conv(f) for conv, f in zip(self.lateral, feats)]
            for i in range(3, 0, -1):  # top-down, nearest, to the next level's run-time size
                lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=paddle.shape(lat[i - 1])[2:],
                                                        mode="nearest")
            size = paddle.shape(lat[0])[2:]
            outs = [self.smooth[0](lat[0])] + [
                F.interpolate(self.smooth[i](lat[i]), size=size, mode="bilinear",
                              align_corners=False) for i in range(1, 4)]
            return self.head(paddle.concat(outs, axis=1))

        def logits_layer(self):
            return self.head[4]  # the last transposed conv, before the Sigmoid

    return DBDet()


def same_pad_norm() -> Any:
    class SamePadNorm(nn.Layer):
        """A style-transfer / GAN-ish encoder as TF-converted models have it: explicit
        asymmetric "same" Pad before stride-2 convs, InstanceNorm and a group norm, then a
        reflect-padded 3x3 and a transposed-conv decoder."""

        logit_std = 1.0  # a Tanh image

        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2D(3, 16, 3, 2)
            self.n1 = nn.InstanceNorm2D(16)
            self.c2 = nn.Conv2D(16, 32, 3, 2)
            # paddle2onnx 2.1.0 writes group_norm's epsilon uninitialised (0.0, or -1e29 and
            # NaN outputs), so the group norm is spelt out, as TF-converted models have it
            self.gn_scale = self.create_parameter([1, 32, 1, 1])
            self.gn_bias = self.create_parameter([1, 32, 1, 1], is_bias=True)
            self.c3 = nn.Conv2D(32, 32, 3, 1)
            self.n3 = nn.InstanceNorm2D(32)
            self.up = nn.Conv2DTranspose(32, 16, 2, 2)
            self.out = nn.Conv2D(16, 3, 3, 1, padding="SAME")  # paddle's own SAME

        def forward(self, x):
            # TF "same" for k3 s2 on an even size pads 0 before, 1 after (asymmetric). Spelt
            # with all 8 pads (paddle's `pad` op): the 4-pad form (pad3d) comes out of
            # paddle2onnx 2.1.0 with an uninitialised constant_value (seen 6e-6, 3e32, ...).
            # Reflect needs the 4-pad form; its constant_value is garbage too but unused.
            same = [0, 0, 0, 0, 0, 1, 0, 1]
            x = F.relu(self.n1(self.c1(F.pad(x, same))))
            x = F.relu(self.group_norm(self.c2(F.pad(x, same)), groups=4))
            x = x + F.relu(self.n3(self.c3(F.pad(x, [1, 1, 1, 1], mode="reflect"))))
            return paddle.tanh(self.out(F.relu(self.up(x))))

        def group_norm(self, x, groups: int):
            c, h, w = x.shape[1:]
            g = x.reshape([-1, groups, c // groups * h * w])
            mean = g.mean(axis=-1, keepdim=True)
            var = ((g - mean) ** 2).mean(axis=-1, keepdim=True)
            g = (g - mean) / paddle.sqrt(var + 1e-5)
            return g.reshape([-1, c, h, w]) * self.gn_scale + self.gn_bias

        def logits_layer(self):
            return self.out

    return SamePadNorm()


# name -> (factory, declared input shape (None: dynamic), saved input shape, opset)
MODELS: dict[str, tuple[Callable[[], Any], list[int | None], tuple[int, ...], int]] = {
    "paddle-ocr-rec-svtr": (svtr_rec, [1, 3, None, 320], (1, 3, 48, 320), 11),
    "paddle-ocr-rec-crnn": (crnn_rec, [None, 3, None, None], (1, 3, 32, 160), 11),
    "paddle-ocr-det-db": (db_det, [None, 3, None, None], (1, 3, 96, 160), 11),
    "paddle-pplcnet": (pplcnet, [None, 3, None, None], (1, 3, 96, 96), 16),
    "paddle-same-pad-norm": (same_pad_norm, [None, 3, 64, 64], (1, 3, 64, 64), 17),
}


def randomise(model: Any, seed: int) -> None:
    """He-normal convs / linears, small biases, non-trivial norm parameters and BN statistics,
    LSTM weights uniform in +-1/sqrt(hidden) (paddle's own init range)."""
    rng = np.random.default_rng(seed)

    def put(p: Any, a: np.ndarray) -> None:
        p.set_value(a.astype("float32"))

    for layer in model.sublayers(include_self=True):
        if hasattr(layer, "gn_scale"):
            put(layer.gn_scale, rng.uniform(0.7, 1.3, layer.gn_scale.shape))
            put(layer.gn_bias, rng.uniform(-0.1, 0.1, layer.gn_bias.shape))
        if isinstance(layer, nn.Conv2D | nn.Conv2DTranspose | nn.Linear):
            w = layer.weight
            fan_in = (w.shape[0] if isinstance(layer, nn.Linear | nn.Conv2DTranspose)
                      else int(np.prod(w.shape[1:])))
            put(w, rng.standard_normal(w.shape) * np.sqrt(2.0 / fan_in))
            if layer.bias is not None:
                put(layer.bias, rng.uniform(-0.1, 0.1, layer.bias.shape))
        elif isinstance(layer, nn.BatchNorm2D):
            n = layer.weight.shape[0]
            put(layer.weight, rng.uniform(0.4, 1.0, n))
            put(layer.bias, rng.uniform(-0.1, 0.1, n))
            put(layer._mean, rng.uniform(-0.1, 0.1, n))
            put(layer._variance, rng.uniform(0.6, 1.6, n))
        elif isinstance(layer, nn.LayerNorm | nn.InstanceNorm2D | nn.GroupNorm):
            # InstanceNorm2D calls its weight "scale"
            scale = layer.scale if isinstance(layer, nn.InstanceNorm2D) else layer.weight
            for p, lo, hi in ((scale, 0.7, 1.3), (layer.bias, -0.1, 0.1)):
                if p is not None:
                    put(p, rng.uniform(lo, hi, p.shape))
        elif isinstance(layer, nn.LSTM):
            bound = 1.0 / np.sqrt(layer.hidden_size)
            for p in layer.parameters():
                put(p, rng.uniform(-bound, bound, p.shape))


def calibrate_head(model: Any, x: np.ndarray) -> None:
    """Scale the layer before the final Softmax / Sigmoid / Tanh so its output has std
    ``model.logit_std`` (2 for Softmax, 1 for the saturating ones) on the seeded input
    (LSUV-style). He-normal weights through hardswish and BN shrink the
    activations; a head fed by them gives logits ~0.01, a uniform Softmax, and a comparison of
    nearly constant outputs that tests little."""
    head = model.logits_layer()
    seen: list[Any] = []
    hook = head.register_forward_post_hook(lambda layer, inp, out: seen.append(out))
    model(paddle.to_tensor(x))
    hook.remove()
    factor = np.float32(getattr(model, "logit_std", 2.0) / max(float(seen[0].std()), 1e-6))
    head.weight.set_value(head.weight.numpy() * factor)
    if head.bias is not None:
        head.bias.set_value(head.bias.numpy() * factor)


def export(name: str, out: Path, seed: int) -> Path:
    import onnx  # paddle2onnx's own (1.17), to read the names and dims it wrote
    import paddle2onnx

    factory, declared, shape, opset = MODELS[name]
    start = time.perf_counter()
    paddle.seed(seed)
    model = factory()
    model.eval()
    randomise(model, seed)
    x = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    calibrate_head(model, x)
    expected = model(paddle.to_tensor(x)).numpy()
    spec = [paddle.static.InputSpec(declared, "float32", "x")]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{name}-") as tmp:
        prefix = str(Path(tmp) / "inference")
        paddle.jit.save(model, prefix, input_spec=spec)
        program = prefix + (".json" if Path(prefix + ".json").exists() else ".pdmodel")
        onnx_path = Path(tmp) / "model.onnx"
        paddle2onnx.export(program, prefix + ".pdiparams", str(onnx_path),
                           opset_version=opset, verbose=False)
        graph = onnx.load(str(onnx_path)).graph
        # every dynamic dim of the input, by the name paddle2onnx gave it ("DynamicDimension.0")
        # or as INPUT:AXIS where it gave none, with the value the saved input gives it (a build
        # binds these; the output dims follow from them)
        dims: dict[str, int] = {}
        value = graph.input[0]
        for axis, d in enumerate(value.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            key = d.dim_param if d.dim_param and d.dim_param != "?" else f"{value.name}:{axis}"
            if dims.setdefault(key, x.shape[axis]) != x.shape[axis]:
                raise RuntimeError(f"{name}: dim {key} is {dims[key]} and {x.shape[axis]}")
        meta = Meta(source="paddle",
                    exporter=f"paddle.jit.save + paddle2onnx {paddle2onnx.__version__} "
                             f"paddle {paddle.__version__}",
                    opset=opset, dims=dims,
                    notes=f"input declared {declared}; export {time.perf_counter() - start:.1f} s")
        return write_export(out, name, None, {graph.input[0].name: x},
                            {graph.output[0].name: expected}, meta, onnx_file=onnx_path)


if __name__ == "__main__":
    sys.exit(main(MODELS, export, __doc__.splitlines()[0], setup=_import))
