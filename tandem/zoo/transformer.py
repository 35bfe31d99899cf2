"""Vision transformer: ViT-Tiny/16 in the form timm / torch export it."""

from __future__ import annotations

import numpy as np
import onnx

from tandem.zoo.builder import GraphBuilder, ZooError

VIT_PATCH = 16
VIT_DIM = 192
VIT_HEADS = 3
VIT_MLP = 4 * VIT_DIM
VIT_DEPTH = 12


def _attention(g: GraphBuilder, x: str, batch: int, tokens: int, name: str) -> str:
    """Multi-head self-attention: one fused QKV projection, split per head with Gather."""
    head_dim = VIT_DIM // VIT_HEADS
    qkv = g.linear(x, VIT_DIM, 3 * VIT_DIM, f"{name}.qkv")
    qkv = g.reshape(qkv, [batch, tokens, 3, VIT_HEADS, head_dim], f"{name}.qkv_reshape")
    qkv = g.transpose(qkv, [2, 0, 3, 1, 4], f"{name}.qkv_permute")  # (3, b, heads, T, d)
    q, k, v = (g.gather(qkv, i, 0, f"{name}.{part}") for i, part in enumerate("qkv"))
    k_t = g.transpose(k, [0, 1, 3, 2], f"{name}.k_transpose")
    scores = g.op("MatMul", [q, k_t], f"{name}.scores")
    scores = g.op("Mul", [scores, g.scalar(head_dim**-0.5, "attn_scale")], f"{name}.scale")
    probs = g.op("Softmax", [scores], f"{name}.softmax", axis=-1)
    ctx = g.op("MatMul", [probs, v], f"{name}.context")
    ctx = g.transpose(ctx, [0, 2, 1, 3], f"{name}.context_permute")
    ctx = g.reshape(ctx, [batch, tokens, VIT_DIM], f"{name}.context_reshape")
    return g.linear(ctx, VIT_DIM, VIT_DIM, f"{name}.proj", gain=0.5)


def vit_tiny(
    g: GraphBuilder, batch: int, resolution: int, depth: int = VIT_DEPTH
) -> onnx.ModelProto:
    """ViT-Tiny/16; ``depth`` (default 12) trims the encoder for fast tests."""
    if not isinstance(depth, int) or depth < 1:
        raise ZooError(f"zoo model 'vit-tiny': depth must be a positive integer, got {depth!r}")
    grid = resolution // VIT_PATCH
    tokens = grid * grid + 1
    x = g.input("input", [batch, 3, resolution, resolution])
    x = g.conv(x, 3, VIT_DIM, VIT_PATCH, VIT_PATCH, pad=0, name="patch_embed.proj", gain=1.0)
    x = g.reshape(x, [batch, VIT_DIM, grid * grid], "patch_embed.flatten")
    x = g.transpose(x, [0, 2, 1], "patch_embed.transpose")
    cls = g.const((g.rng.standard_normal((1, 1, VIT_DIM)) * 0.5).astype(np.float32), "cls_token")
    cls = g.op("Expand", [cls, g.ints([batch, 1, VIT_DIM], "shape")], "cls_token.expand")
    x = g.concat([cls, x], 1, "cat_cls")
    pos = (g.rng.standard_normal((1, tokens, VIT_DIM)) * 0.5).astype(np.float32)
    x = g.op("Add", [x, g.const(pos, "pos_embed")], "pos_embed.add")
    for i in range(depth):
        name = f"blocks.{i}"
        h = _attention(g, g.layer_norm(x, VIT_DIM, f"{name}.norm1"), batch, tokens, f"{name}.attn")
        x = g.op("Add", [x, h], f"{name}.add1")
        h = g.linear(g.layer_norm(x, VIT_DIM, f"{name}.norm2"), VIT_DIM, VIT_MLP, f"{name}.mlp.fc1")
        h = g.act(h, "gelu", f"{name}.mlp.gelu")
        h = g.linear(h, VIT_MLP, VIT_DIM, f"{name}.mlp.fc2", gain=0.5)
        x = g.op("Add", [x, h], f"{name}.add2")
    x = g.gather(g.layer_norm(x, VIT_DIM, "norm"), 0, 1, "cls_select")  # (b, dim)
    return g.build([g.rename(g.gemm(x, VIT_DIM, 1000, "head"), "logits")])
