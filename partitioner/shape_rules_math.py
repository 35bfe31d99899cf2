"""Shape rules of the compute ops: element-wise and unary math, convolutions and pools
(one window formula for both), Gemm / MatMul, normalizations, reductions and Q/DQ.

Data-movement ops live in ``shape_rules_layout``; ``shape_inference`` merges :data:`RULES`
into its table.
"""

from __future__ import annotations

from partitioner.ir import Dim, Shape
from partitioner.shape_context import (
    Result,
    Rule,
    RuleContext,
    all_known,
    broadcast_shapes,
    dtype_attr,
    norm_axis,
)


def same(ctx: RuleContext) -> list[Result]:
    return [(ctx.shape(0), ctx.dtype(0))]


def bool_like(ctx: RuleContext) -> list[Result]:
    return [(ctx.shape(0), "bool")]


def _dropout(ctx: RuleContext) -> list[Result]:
    """The output, and the optional mask (bool, same shape)."""
    return [(ctx.shape(0), ctx.dtype(0)), (ctx.shape(0), "bool")][: len(ctx.node.outputs)]


def elementwise(dtype: str | None = None) -> Rule:
    def rule(ctx: RuleContext) -> list[Result]:
        shapes = [t.shape if t is not None else None for t in ctx.node.inputs]
        return [(broadcast_shapes(shapes, ctx), dtype or ctx.dtype(0))]

    return rule


def _where(ctx: RuleContext) -> list[Result]:
    return [(broadcast_shapes([ctx.shape(0), ctx.shape(1), ctx.shape(2)], ctx), ctx.dtype(1))]


def _prelu(ctx: RuleContext) -> list[Result]:
    shape = broadcast_shapes([ctx.shape(0), ctx.shape(1)], ctx)
    x = ctx.shape(0)
    if shape is not None and x is not None and len(shape) != len(x):
        raise ctx.fail(f"slope {ctx.shape(1)} has more dims than the input {x}")
    return [(x, ctx.dtype(0))]


def _cast(ctx: RuleContext) -> list[Result]:
    return [(ctx.shape(0), dtype_attr(ctx, "to", 1))]


def _window_out(size: Dim, k: int, s: int, d: int, pb: int, pe: int, ceil: bool,
                mode: str) -> Dim:  # fmt: skip
    eff = (k - 1) * d + 1
    if not isinstance(size, int):
        # A symbol passes through windows that keep the size (1x1 stride 1, SAME stride 1).
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            keeps = s == 1
        elif mode == "VALID":
            keeps = s == 1 and eff == 1
        else:
            keeps = s == 1 and eff - 1 == pb + pe
        return size if keeps else None
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        return -(-size // s)
    if mode == "VALID":
        return (size - eff) // s + 1
    span = size + pb + pe - eff
    if span < 0:
        # A window larger than the padded input: ONNX Runtime accepts it for pools and divides
        # with C++ truncation toward zero; match it, since it is the reference.
        return int(span / s) + 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + pb:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def _conv(ctx: RuleContext) -> list[Result]:
    x, w = ctx.shape(0), ctx.shape(1)
    if x is None or w is None:
        return [(None, ctx.dtype(0))]
    if len(x) != len(w):
        raise ctx.fail(f"input rank {len(x)} and weight rank {len(w)} differ")
    group = int(ctx.attr("group", 1))
    c, wc = x[1], w[1]
    if isinstance(c, int) and isinstance(wc, int) and c != wc * group:
        raise ctx.fail(
            f"input has {c} channels but the weight {w} with group={group} expects {wc * group}"
        )
    b = ctx.shape(2)
    if b is not None and (len(b) != 1 or (all_known(b[0], w[0]) and b[0] != w[0])):
        raise ctx.fail(f"bias shape {b} does not match {w[0]} output channels")
    k = len(x) - 2
    kernel = ctx.attr("kernel_shape", list(w[2:]))
    strides, dil = ctx.attr("strides", [1] * k), ctx.attr("dilations", [1] * k)
    pads = ctx.attr("pads", [0] * 2 * k)
    mode = ctx.attr("auto_pad", "NOTSET")
    spatial = [
        _window_out(x[2 + i], kernel[i], strides[i], dil[i], pads[i], pads[k + i], False, mode)
        if isinstance(kernel[i], int) else None
        for i in range(k)
    ]  # fmt: skip
    return [((x[0], w[0], *spatial), ctx.dtype(0))]


def _conv_transpose(ctx: RuleContext) -> list[Result]:
    x, w = ctx.shape(0), ctx.shape(1)
    if x is None or w is None:
        return [(None, ctx.dtype(0))]
    group = int(ctx.attr("group", 1))
    if all_known(x[1], w[0]) and x[1] != w[0]:
        raise ctx.fail(f"input has {x[1]} channels but the weight {w} expects {w[0]}")
    k = len(x) - 2
    m: Dim = w[1] * group if isinstance(w[1], int) else None
    if "output_shape" in ctx.node.attrs:
        spatial: list[Dim] = list(ctx.attr("output_shape", []))[-k:]
        return [((x[0], m, *spatial), ctx.dtype(0))]
    kernel = ctx.attr("kernel_shape", list(w[2:]))
    strides, dil = ctx.attr("strides", [1] * k), ctx.attr("dilations", [1] * k)
    pads = ctx.attr("pads", [0] * 2 * k)
    out_pad = ctx.attr("output_padding", [0] * k)
    mode = ctx.attr("auto_pad", "NOTSET")
    spatial = []
    for i in range(k):
        size = x[2 + i]
        if not isinstance(size, int) or not isinstance(kernel[i], int):
            spatial.append(None)
        elif mode in ("SAME_UPPER", "SAME_LOWER"):
            spatial.append(size * strides[i])
        else:
            eff = (kernel[i] - 1) * dil[i] + 1
            spatial.append(strides[i] * (size - 1) + out_pad[i] + eff - pads[i] - pads[k + i])
    return [((x[0], m, *spatial), ctx.dtype(0))]


def _pool(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0)), (None, "int64")]
    k = len(x) - 2
    kernel = ctx.attr("kernel_shape", [1] * k)
    if len(kernel) != k:
        raise ctx.fail(f"kernel_shape {kernel} does not fit input rank {len(x)}")
    strides, dil = ctx.attr("strides", [1] * k), ctx.attr("dilations", [1] * k)
    pads = ctx.attr("pads", [0] * 2 * k)
    ceil, mode = bool(ctx.attr("ceil_mode", 0)), ctx.attr("auto_pad", "NOTSET")
    spatial = [
        _window_out(x[2 + i], kernel[i], strides[i], dil[i], pads[i], pads[k + i], ceil, mode)
        for i in range(k)
    ]
    shape = (x[0], x[1], *spatial)
    return [(shape, ctx.dtype(0)), (shape, "int64")]


def _global_pool(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    return [((*x[:2], *([1] * (len(x) - 2))) if x is not None else None, ctx.dtype(0))]


def _gemm(ctx: RuleContext) -> list[Result]:
    a, b = ctx.shape(0), ctx.shape(1)
    if a is None or b is None:
        return [(None, ctx.dtype(0))]
    if len(a) != 2 or len(b) != 2:
        raise ctx.fail(f"expects 2-D inputs, got {a} and {b}")
    m, ka = (a[1], a[0]) if ctx.attr("transA", 0) else (a[0], a[1])
    kb, n = (b[1], b[0]) if ctx.attr("transB", 0) else (b[0], b[1])
    if all_known(ka, kb) and ka != kb:
        raise ctx.fail(f"inner dims differ: A {a} and B {b} (transA/transB applied)")
    if ctx.shape(2) is not None:
        broadcast_shapes([ctx.shape(2), (m, n)], ctx)
    return [((m, n), ctx.dtype(0))]


def _matmul(ctx: RuleContext) -> list[Result]:
    a, b = ctx.shape(0), ctx.shape(1)
    if a is None or b is None:
        return [(None, ctx.dtype(0))]
    if not a or not b:
        raise ctx.fail("MatMul needs inputs of rank >= 1")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if all_known(a2[-1], b2[-2]) and a2[-1] != b2[-2]:
        raise ctx.fail(f"inner dims differ: {a} @ {b}")
    batch = broadcast_shapes([a2[:-2], b2[:-2]], ctx)
    assert batch is not None
    out = [*batch, a2[-2], b2[-1]]
    if len(a) == 1:
        out.pop(-2)
    if len(b) == 1:
        out.pop(-1)
    return [(tuple(out), ctx.dtype(0))]


def _norm_outputs(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    results: list[Result] = [(x, ctx.dtype(0))]
    if ctx.node.op == "LayerNormalization" and len(ctx.node.outputs) > 1:
        axis = int(ctx.attr("axis", -1))
        stat: Shape | None = None
        if x is not None:
            a = norm_axis(axis, len(x), ctx)
            stat = (*x[:a], *([1] * (len(x) - a)))
        stash = dtype_attr(ctx, "stash_type", 1)
        results += [(stat, stash), (stat, stash)]
    return results


def reduce(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    keep = bool(ctx.attr("keepdims", 1))
    axes = ctx.static_ints(1)
    if axes is None and ctx.t(1) is not None:
        return [(None, ctx.dtype(0))]
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            return [(x, ctx.dtype(0))]
        axes = list(range(len(x)))
    norm = {norm_axis(a, len(x), ctx) for a in axes}
    out = [1 if i in norm else d for i, d in enumerate(x) if keep or i not in norm]
    return [(tuple(out), ctx.dtype(0))]


def argmax(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, "int64")]
    a = norm_axis(int(ctx.attr("axis", 0)), len(x), ctx)
    keep = bool(ctx.attr("keepdims", 1))
    out = [1 if i == a else d for i, d in enumerate(x) if keep or i != a]
    return [(tuple(out), "int64")]


def _topk(ctx: RuleContext) -> list[Result]:
    x, k = ctx.shape(0), ctx.static_ints(1)
    if x is None:
        return [(None, ctx.dtype(0)), (None, "int64")]
    a = norm_axis(int(ctx.attr("axis", -1)), len(x), ctx)
    out = list(x)
    out[a] = k[0] if k is not None else None
    size = x[a]
    if k is not None and isinstance(size, int) and k[0] > size:
        raise ctx.fail(f"k={k[0]} is larger than dim {a} of size {size}")
    return [(tuple(out), ctx.dtype(0)), (tuple(out), "int64")]


def _quantize(ctx: RuleContext) -> list[Result]:
    if int(ctx.attr("output_dtype", 0)):
        dtype: str | None = dtype_attr(ctx, "output_dtype", 0)
    else:
        dtype = ctx.dtype(2) if ctx.t(2) is not None else "uint8"
    return [(ctx.shape(0), dtype)]


def _dequantize(ctx: RuleContext) -> list[Result]:
    return [(ctx.shape(0), ctx.dtype(1) or "float32")]


def _batchnorm(ctx: RuleContext) -> list[Result]:
    x, scale = ctx.shape(0), ctx.shape(1)
    if x is not None and scale is not None and len(x) > 1 and all_known(x[1], *scale):
        if tuple(scale) != (x[1],):
            raise ctx.fail(f"scale {scale} does not match {x[1]} channels of input {x}")
    # training mode: running mean / var, shaped and typed like the mean / var inputs
    return [(x, ctx.dtype(0))] + [(ctx.shape(3), ctx.dtype(3))] * (len(ctx.node.outputs) - 1)


_UNARY = """Relu LeakyRelu Sigmoid Tanh Clip HardSigmoid HardSwish Elu Selu Softplus Gelu Erf Mish
Sqrt Exp Log Abs Neg Reciprocal Floor Ceil Identity Softmax LogSoftmax LRN InstanceNormalization
""".split()
RULES: dict[str, Rule] = {op: same for op in _UNARY}
RULES.update({op: elementwise() for op in "Add Sub Mul Div Pow Max Min Sum".split()})
RULES.update({op: elementwise("bool") for op in "Equal Greater Less".split()})
RULES.update({op: reduce for op in "ReduceMean ReduceSum ReduceMax ReduceMin".split()})
RULES.update(
    {
        "Not": bool_like,
        "Dropout": _dropout,
        "Where": _where,
        "PRelu": _prelu,
        "Cast": _cast,
        "Conv": _conv,
        "ConvTranspose": _conv_transpose,
        "MaxPool": _pool,
        "AveragePool": _pool,
        "GlobalAveragePool": _global_pool,
        "GlobalMaxPool": _global_pool,
        "Gemm": _gemm,
        "MatMul": _matmul,
        "BatchNormalization": _batchnorm,
        "LayerNormalization": _norm_outputs,
        "ArgMax": argmax,
        "TopK": _topk,
        "QuantizeLinear": _quantize,
        "DequantizeLinear": _dequantize,
    }
)
