"""Hugging Face ``transformers`` models built from small configs (few layers, narrow, but the
library's real architecture code), seeded, and exported with ``torch.onnx.export``.

Runs in ``.venv-export``: ``python tests/conformance/export_transformers.py --list`` /
``--out DIR [NAME ...]``. ``build(name)`` gives the eval-mode module (returning only the named
outputs) and its example inputs, for the GPU-side PyTorch eager / torch.compile timings.

Exporter: the TorchScript one (``dynamo=False``, opset 17, constant folding), as the HF ONNX
guides and most Jetson users still use it; ``hf-vit-dynamo`` is the same ViT through the
``dynamo=True`` exporter (opset 18, what it emits). BERT / DistilBERT are exported with the
dynamic batch / sequence axes HF's ONNX exports declare; the rest are static.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_common import (  # noqa: E402
    Meta,
    main,
    no_network,
    randomise_torch,
    seeded_array,
    write_export,
)

os.environ["HF_HUB_OFFLINE"] = "1"  # configs only; nothing may be fetched
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SEQ = 32  # tokens: BERT-style tests in CI fit this easily


@dataclass
class Spec:
    make: Callable[[], Any]  # -> the HF model (eval mode is set later)
    inputs: Callable[[int], dict[str, np.ndarray]]  # seed -> ONNX input name -> array
    outputs: list[str]  # keys of the HF output to keep, in order (also the ONNX output names)
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)  # the dynamic dims' values in the npz
    dynamo: bool = False
    notes: str = ""


# ----- inputs -----------------------------------------------------------------------------------
def _text(seed: int, token_types: bool = True) -> dict[str, np.ndarray]:
    ids = seeded_array((1, SEQ), seed, dtype=np.int64)
    mask = np.ones((1, SEQ), np.int64)
    mask[:, -5:] = 0  # padding at the end, so the mask is not a no-op
    feeds = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        types = np.zeros((1, SEQ), np.int64)
        types[:, SEQ // 2:] = 1  # sentence A, then sentence B
        feeds["token_type_ids"] = types
    return feeds


def _image(size: int) -> Callable[[int], dict[str, np.ndarray]]:
    return lambda seed: {"pixel_values": seeded_array((1, 3, size, size), seed)}


# ----- models -----------------------------------------------------------------------------------
def _bert() -> Any:
    # transformers' default attention (SDPA): its export carries the IsNaN / Where guard of the
    # masked softmax; the other models ask for "eager", the plain MatMul-Softmax-MatMul
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=128,
                                max_position_embeddings=128),
                     add_pooling_layer=False)


def _distilbert() -> Any:
    from transformers import DistilBertConfig, DistilBertModel

    return DistilBertModel(DistilBertConfig(vocab_size=1000, dim=64, n_layers=2, n_heads=4,
                                            hidden_dim=128, max_position_embeddings=128,
                                            attn_implementation="eager"))


def _vit() -> Any:
    from transformers import ViTConfig, ViTForImageClassification

    return ViTForImageClassification(ViTConfig(image_size=64, patch_size=8, hidden_size=64,
                                               num_hidden_layers=2, num_attention_heads=4,
                                               intermediate_size=128, num_labels=10,
                                               attn_implementation="eager"))


def _detr() -> Any:
    # the backbone from a ResNet config, not timm or downloaded weights
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    backbone = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                            layer_type="basic", out_features=["stage4"])
    return DetrForObjectDetection(DetrConfig(backbone_config=backbone, d_model=64,
                                             encoder_layers=2, decoder_layers=2,
                                             encoder_attention_heads=4, decoder_attention_heads=4,
                                             encoder_ffn_dim=128, decoder_ffn_dim=128,
                                             num_queries=20, num_labels=10))


def _segformer() -> Any:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    return SegformerForSemanticSegmentation(SegformerConfig(
        depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], num_attention_heads=[1, 2, 4, 8],
        decoder_hidden_size=64, num_labels=10))


def _swin() -> Any:
    # shifted windows: the Roll / window-partition Reshape-Transpose chains and patch merging;
    # depths (2, 2) so the second block of each stage has the shift
    from transformers import SwinConfig, SwinForImageClassification

    return SwinForImageClassification(SwinConfig(image_size=64, patch_size=4, embed_dim=32,
                                                 depths=[2, 2], num_heads=[2, 4], window_size=4,
                                                 num_labels=10, drop_path_rate=0.0,
                                                 attn_implementation="eager"))


def _convnext() -> Any:
    # 7x7 depthwise convs, channels-last LayerNorm (Transpose around it), layer scale
    from transformers import ConvNextConfig, ConvNextForImageClassification

    return ConvNextForImageClassification(ConvNextConfig(hidden_sizes=[16, 32, 64, 128],
                                                         depths=[1, 1, 1, 1], num_labels=10))


def _mobilevit() -> Any:
    # MobileNetV2 blocks + transformers over unfolded 2x2 patches (the unfold / fold Reshapes)
    from transformers import MobileViTConfig, MobileViTForImageClassification

    return MobileViTForImageClassification(MobileViTConfig(
        image_size=64, hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 16, 24, 32, 48, 64, 128],
        num_labels=10, attn_implementation="eager"))


def _whisper_encoder() -> Any:
    # whisper-tiny's shape, narrower: 80 mel bins, 2 layers; 200 frames (2 s) instead of 3000
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig(num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=1,
                           encoder_attention_heads=4, decoder_attention_heads=4,
                           encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=100,
                           attn_implementation="eager")
    return WhisperModel(config).get_encoder()


def _wav2vec2() -> Any:
    # the base model's 7-conv feature encoder (GroupNorm on the first conv: InstanceNormalization
    # in ONNX), narrower; a 16-tap grouped positional conv; 2 transformer layers
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    return Wav2Vec2Model(Wav2Vec2Config(hidden_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=128,
                                        conv_dim=[32] * 7, num_conv_pos_embeddings=16,
                                        num_conv_pos_embedding_groups=4,
                                        feat_extract_norm="group", do_stable_layer_norm=False,
                                        mask_time_prob=0.0, attn_implementation="eager"))


def _gpt2() -> Any:
    # a decoder: the causal mask, Conv1D (Gemm) projections; its token ids are reshaped before
    # the embedding lookup (integer math on the host, the lookup on the GPU)
    from transformers import GPT2Config, GPT2Model
    return GPT2Model(GPT2Config(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                bos_token_id=998, eos_token_id=999,
                                attn_implementation="eager"))


def _roberta() -> Any:
    # position ids computed from the padding mask (Equal / Not / CumSum on int64)
    from transformers import RobertaConfig, RobertaModel
    return RobertaModel(RobertaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=128,
                                      max_position_embeddings=SEQ + 2,
                                      attn_implementation="eager"), add_pooling_layer=False)


def _deberta_v2() -> Any:
    # disentangled attention: relative positions as int64 math cast to float, log buckets,
    # a float mask cast to bool
    from transformers import DebertaV2Config, DebertaV2Model
    return DebertaV2Model(DebertaV2Config(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=128,
                                          max_position_embeddings=128))


def _clip_text() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(vocab_size=1000, hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        max_position_embeddings=SEQ, bos_token_id=998,
                                        eos_token_id=999, attn_implementation="eager"))


MODELS: dict[str, Spec] = {
    "bert": Spec(_bert, _text, ["last_hidden_state"],
                 dynamic={k: {0: "batch", 1: "sequence"}
                          for k in ("input_ids", "attention_mask", "token_type_ids",
                                    "last_hidden_state")},
                 dims={"batch": 1, "sequence": SEQ}),
    "distilbert": Spec(_distilbert, lambda s: _text(s, token_types=False), ["last_hidden_state"],
                       dynamic={k: {0: "batch", 1: "sequence"}
                                for k in ("input_ids", "attention_mask", "last_hidden_state")},
                       dims={"batch": 1, "sequence": SEQ}),
    "hf-vit": Spec(_vit, _image(64), ["logits"]),
    "hf-vit-dynamo": Spec(_vit, _image(64), ["logits"], dynamo=True),
    "detr": Spec(_detr, _image(128), ["logits", "pred_boxes"]),
    "segformer": Spec(_segformer, _image(128), ["logits"]),
    "swin": Spec(_swin, _image(64), ["logits"]),
    "convnext": Spec(_convnext, _image(64), ["logits"]),
    "mobilevit": Spec(_mobilevit, _image(64), ["logits"]),
    "whisper-encoder": Spec(_whisper_encoder,
                            lambda s: {"input_features": seeded_array((1, 80, 200), s)},
                            ["last_hidden_state"]),
    "wav2vec2": Spec(_wav2vec2, lambda s: {"input_values": seeded_array((1, 8000), s)},
                     ["last_hidden_state"]),
    "gpt2": Spec(_gpt2, lambda s: _text(s, token_types=False), ["last_hidden_state"]),
    "roberta": Spec(_roberta, lambda s: _text(s, token_types=False), ["last_hidden_state"]),
    "deberta-v2": Spec(_deberta_v2, lambda s: _text(s, token_types=False),
                       ["last_hidden_state"]),
    "clip-text": Spec(_clip_text, lambda s: _text(s, token_types=False), ["last_hidden_state"]),
}


def _named(model: Any, inputs: list[str], outputs: list[str]) -> Any:
    """Wrap an HF model so forward takes the inputs positionally and returns only the named
    outputs, as a tuple (what torch.onnx.export and torch.compile want)."""
    import torch

    class Named(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> tuple[Any, ...]:
            out = self.model(**dict(zip(inputs, args)), return_dict=True)
            return tuple(out[k] for k in outputs)

    return Named().eval()


def _seeded_model(name: str, seed: int) -> tuple[Any, dict[str, np.ndarray]]:
    import torch

    spec = MODELS[name]
    torch.manual_seed(seed)  # embeddings and position tables: HF's own init, seeded
    with no_network(f"transformers {name}"):
        model = spec.make().eval()
    randomise_torch(model, seed)
    feeds = spec.inputs(seed)
    return _named(model, list(feeds), spec.outputs), feeds


def build(name: str, seed: int = 0) -> tuple[Any, tuple[Any, ...]]:
    """The eval-mode module (returns the named outputs) and its example input tensors."""
    import torch

    module, feeds = _seeded_model(name, seed)
    return module, tuple(torch.from_numpy(v) for v in feeds.values())


def export(name: str, out: Path, seed: int) -> Path:
    import torch
    import transformers

    spec = MODELS[name]
    start = time.perf_counter()
    module, feeds = _seeded_model(name, seed)
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    with torch.no_grad():
        expected = [t.numpy() for t in module(*args)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings on shape asserts: expected here
        if spec.dynamo:
            opset = 18
            program = torch.onnx.export(module, args, input_names=list(feeds),
                                        output_names=spec.outputs, opset_version=opset,
                                        dynamo=True, external_data=False, verbose=False)
            with tempfile.TemporaryDirectory() as tmp:
                program.save(str(Path(tmp) / "m.onnx"))
                data = (Path(tmp) / "m.onnx").read_bytes()
        else:
            opset = 17
            buf = io.BytesIO()
            torch.onnx.export(module, args, buf, input_names=list(feeds),
                              output_names=spec.outputs, opset_version=opset,
                              dynamic_axes=spec.dynamic or None, do_constant_folding=True,
                              dynamo=False)
            data = buf.getvalue()
    meta = Meta(
        source="transformers",
        exporter=f"torch.onnx.export(dynamo={spec.dynamo}) torch {torch.__version__} "
                 f"transformers {transformers.__version__}",
        opset=opset,
        dims=dict(spec.dims),
        notes=f"{type(module.model).__name__} from a small config; "
              f"export {time.perf_counter() - start:.1f} s",
    )
    return write_export(out, name, data, feeds, dict(zip(spec.outputs, expected)), meta)


if __name__ == "__main__":
    sys.exit(main(MODELS, export, __doc__.splitlines()[0]))
