"""Run a loadable with the DLA's numerics.

FP16 ops: FP16 storage, FP32 arithmetic (the convolution accumulates in FP32), one rounding to
FP16 at each engine op's output. INT8 ops: the convolution multiplies int8 by int8 and
accumulates exactly -- through float32 BLAS GEMMs over at most 1024 terms at a time (products
< 2**14, so every partial sum is an integer below 2**24, exact in any order), the chunks summed
in float64 (exact below 2**53); the bias is added as int32 in the accumulator's scale; the SDP
rescales per output channel, applies the fused post-operations and requantises with round half
away from zero and saturation to [-128, 127]. LUT activations (sigmoid, tanh) and LRN run in FP16
even in INT8 loadables, as TensorRT raises them.

Every failure is reported as an :class:`ExecutionError` naming the loadable, the engine op and
its layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dla_sim.loadable import EngineOp, Loadable, TensorDesc
from dla_sim.numerics import dequantize, quantize, to_fp16
from partitioner.errors import ExecutionError, InputError, TandemError

Array = np.ndarray


def run_loadable(
    loadable: Loadable,
    feeds: dict[str, np.ndarray],
    raw: bool = False,
    stored: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Execute ``loadable`` on ``feeds`` (name -> NCHW array). Returns its outputs.

    Outputs are float32 (dequantised) NCHW arrays, or with ``raw=True`` the stored values
    (int8 or float16) as the DLA leaves them. ``stored``, when given, receives every tensor the
    run stored (each engine op's outputs, the inputs as the DLA holds them) in the same form.
    """
    executor = _Executor(loadable)
    out = executor.run(feeds, raw)
    if stored is not None:
        stored.update({name: executor.value(name, raw) for name in executor.env})
    return out


class _Executor:
    def __init__(self, loadable: Loadable) -> None:
        self.l = loadable
        self.env: dict[str, Array] = {}

    # ----- tensors -----------------------------------------------------------------------
    def desc(self, name: str) -> TensorDesc:
        return self.l.tensors[name]

    def real(self, name: str, precision: str) -> Array:
        """The value of tensor ``name`` as real numbers: float64 for int8 ops, float32 for fp16."""
        d, v = self.desc(name), self.env[name]
        if d.dtype == "int8":
            x = dequantize(v, d.scale)  # type: ignore[arg-type]
            return x if precision == "int8" else to_fp16(x).astype(np.float32)
        return v.astype(np.float64 if precision == "int8" else np.float32)

    def store(self, name: str, values: Array) -> None:
        d = self.desc(name)
        values = np.asarray(values).reshape(d.shape)
        if d.dtype == "int8":
            self.env[name] = quantize(values, d.scale)  # type: ignore[arg-type]
        else:
            self.env[name] = to_fp16(values)

    # ----- driver ------------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray], raw: bool) -> dict[str, np.ndarray]:
        missing = [n for n in self.l.inputs if n not in feeds]
        if missing:
            raise InputError(
                f"loadable '{self.l.name}' needs input(s) {', '.join(missing)}; "
                f"got {', '.join(sorted(feeds)) or 'none'}"
            )
        for name in self.l.inputs:
            d = self.desc(name)
            x = np.asarray(feeds[name])
            if list(x.shape) != list(d.shape):
                raise InputError(
                    f"loadable '{self.l.name}': input '{name}' has shape {list(x.shape)}, "
                    f"the loadable was built for {d.shape} (the DLA has no dynamic shapes)"
                )
            if str(x.dtype) == d.dtype:  # already in the DLA's storage type
                self.env[name] = x
            else:
                self.store(name, x.astype(np.float64))
        for op in self.l.ops:
            try:
                ENGINES[op.engine](self, op)
            except TandemError as err:
                raise ExecutionError(self._where(op) + str(err)) from err
            except (ValueError, IndexError, KeyError, TypeError, FloatingPointError) as err:
                raise ExecutionError(self._where(op) + f"{type(err).__name__}: {err}") from err
        return {name: self.value(name, raw) for name in self.l.outputs}

    def value(self, name: str, raw: bool) -> np.ndarray:
        """Stored tensor ``name`` as the DLA holds it (``raw``) or as float32 real numbers."""
        v = self.env[name]
        if raw:
            return v
        if self.desc(name).dtype == "int8":
            return dequantize(v, self.desc(name).scale).astype(np.float32)  # type: ignore[arg-type]
        return v.astype(np.float32)

    def _where(self, op: EngineOp) -> str:
        return (
            f"loadable '{self.l.name}', engine op '{op.name}' ({op.engine}), "
            f"layer(s) {', '.join(op.layers)}: "
        )

    def precision_of(self, op: EngineOp) -> str:
        """int8 when every tensor the op reads is INT8, else fp16 (TensorRT's fallback)."""
        if all(self.desc(t).dtype == "int8" for t in op.inputs):
            return "int8"
        return "fp16"

    # ----- convolution core + SDP + on-the-fly PDP -----------------------------------------
    def conv(self, op: EngineOp) -> None:
        p = op.params
        prec = p["precision"]
        x_desc = self.desc(op.inputs[0])
        w = self.l.blobs[op.blobs["weights"]]
        out_desc = self.desc(op.outputs[0])
        exact = prec == "int8"
        if exact:
            x = self.env[op.inputs[0]].astype(np.float32)  # int8 values, exactly
        else:
            x = self.real(op.inputs[0], "fp16")
        wf = self.l.cache.get(op.blobs["weights"])
        if wf is None:  # int8 or fp16 weights widened once per loadable, exactly
            wf = self.l.cache[op.blobs["weights"]] = w.astype(np.float32)
        acc = _conv_core(x, wf, p, self._pre_pool_shape(op), exact)
        if exact:
            acc = acc.astype(np.float64, copy=False)
        axis = p["channel_axis"] % acc.ndim
        bshape = [1] * acc.ndim
        bshape[axis] = -1
        if prec == "int8":
            acc = acc + self.l.blobs[op.blobs["bias"]].astype(np.float64).reshape(bshape)
            multiplier = float(x_desc.scale) * self.l.blobs[op.blobs["wscale"]]  # type: ignore[arg-type]
            v = acc * multiplier.reshape(bshape)
        else:
            v = acc + self.l.blobs[op.blobs["bias"]].astype(np.float32).reshape(bshape)
        v = self.post_ops(op, v, prec)
        if "pool" in p:
            v = _pool(v, p["pool"])
        self.store(out_desc.name, v)

    def _pre_pool_shape(self, op: EngineOp) -> list[int]:
        """The convolution's output shape (before an on-the-fly pooling, if any)."""
        out = list(self.desc(op.outputs[0]).shape)
        p = op.params
        if "pool" not in p:
            return out
        # Recover the conv output size from the conv's own geometry.
        x = self.desc(op.inputs[0]).shape
        sizes = []
        for i in range(2):
            k, s, d = p["kernel"][i], p["strides"][i], p["dilations"][i]
            pad = p["pads"][i] + p["pads"][i + 2]
            sizes.append((x[2 + i] + pad - ((k - 1) * d + 1)) // s + 1)
        return [out[0], p["out_channels"], sizes[0], sizes[1]]

    def post_ops(self, op: EngineOp, v: Array, prec: str) -> Array:
        ftype = np.float64 if prec == "int8" else np.float32
        for post in op.params.get("post", []):
            v = self._post(op, post, v, prec, ftype)
        return v

    def _post(self, op: EngineOp, post: dict[str, Any], v: Array, prec: str, ftype: Any) -> Array:
        kind = post["op"]
        blobs = self.l.blobs
        if kind == "relu":
            return np.maximum(v, 0)
        if kind == "clip":
            return np.clip(v, post["min"], post["max"])
        if kind == "leaky":
            return np.where(v >= 0, v, v * ftype(post["alpha"]))
        if kind == "prelu":
            return np.where(v >= 0, v, v * blobs[post["blob"]].astype(ftype))
        if kind == "affine":
            return v * blobs[post["scale"]].astype(ftype) + blobs[post["shift"]].astype(ftype)
        if kind == "hardsigmoid":
            return np.clip(v * ftype(post["alpha"]) + ftype(post["beta"]), 0, 1)
        if kind in ("identity",):
            return v
        if kind in ("abs", "neg"):
            return np.abs(v) if kind == "abs" else -v
        if kind in LUT:
            # The LUT runs in FP16 (TensorRT raises INT8 sigmoid/tanh to FP16).
            x16 = to_fp16(v).astype(np.float32)
            return to_fp16(LUT[kind](x16)).astype(ftype)
        if kind in ("const", "eltwise"):
            if kind == "const":
                other = blobs[post["blob"]].astype(ftype)
            else:
                other = self.real(op.inputs[post["operand"]], prec).astype(ftype, copy=False)
            a, b = (other, v) if post["reverse"] else (v, other)
            return BINARY[post["kind"]](a, b)
        raise ExecutionError(f"unknown SDP post-operation '{kind}'")

    # ----- standalone engines ------------------------------------------------------------
    def sdp(self, op: EngineOp) -> None:
        prec = self.precision_of(op)
        v = self.real(op.inputs[0], prec)
        self.store(op.outputs[0], self.post_ops(op, v, prec))

    def pdp(self, op: EngineOp) -> None:
        prec = self.precision_of(op)
        self.store(op.outputs[0], _pool(self.real(op.inputs[0], prec), op.params))

    def cdp(self, op: EngineOp) -> None:
        x = self.real(op.inputs[0], "fp16")  # LRN always runs in FP16
        p = op.params
        size = int(p["size"])
        sq = np.square(x)
        c = x.shape[1]
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
        csum = np.cumsum(padded, axis=1, dtype=np.float32)
        csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
        window = csum[:, size : size + c] - csum[:, :c]
        y = x / np.power(
            np.float32(p["bias"]) + np.float32(p["alpha"] / size) * window, np.float32(p["beta"])
        )
        self.store(op.outputs[0], y)

    def softmax(self, op: EngineOp) -> None:
        x = self.real(op.inputs[0], "fp16")
        axis = op.params["axis"]
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        self.store(op.outputs[0], e / e.sum(axis=axis, keepdims=True))

    def _move(
        self, op: EngineOp, fn: Callable[[list[Array]], list[Array]], exact: bool = True
    ) -> None:
        """Data movement: raw copy when storage agrees, else through real values."""
        descs = [self.desc(t) for t in op.inputs] + [self.desc(t) for t in op.outputs]
        same = len({(d.dtype, d.scale) for d in descs}) == 1
        if same and exact:
            results = fn([self.env[t] for t in op.inputs])
            for name, r in zip(op.outputs, results):
                self.env[name] = np.ascontiguousarray(r).reshape(self.desc(name).shape)
            return
        prec = self.precision_of(op)
        results = fn([self.real(t, prec) for t in op.inputs])
        for name, r in zip(op.outputs, results):
            self.store(name, r)

    def rubik(self, op: EngineOp) -> None:
        p = op.params
        if p["kind"] == "reshape":
            self._move(op, lambda xs: [xs[0].reshape(p["shape"])])
        elif p["kind"] == "transpose":
            self._move(op, lambda xs: [xs[0].transpose(p["perm"])])
        else:
            out_shape = self.desc(op.outputs[0]).shape
            exact = p["mode"] == "nearest"
            self._move(op, lambda xs: [_resize(xs[0], out_shape, p)], exact=exact)

    def bdma(self, op: EngineOp) -> None:
        p = op.params
        if p["kind"] == "concat":
            self._move(op, lambda xs: [np.concatenate(xs, axis=p["axis"])])
        elif p["kind"] == "split":
            bounds = np.cumsum(p["sizes"])[:-1]
            self._move(op, lambda xs: np.split(xs[0], bounds, axis=p["axis"]))
        else:
            index = tuple(slice(a, b, c) for a, b, c in p["index"])
            self._move(op, lambda xs: [xs[0][index]])


LUT: dict[str, Callable[[Array], Array]] = {
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "sin": np.sin,
    "cos": np.cos,
    "atanh": np.arctanh,
    "atan": np.arctan,
}
BINARY: dict[str, Callable[[Array, Array], Array]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
    "pow": np.power,
    "eq": lambda a, b: (a == b).astype(a.dtype),
    "gt": lambda a, b: (a > b).astype(a.dtype),
    "lt": lambda a, b: (a < b).astype(a.dtype),
}
ENGINES: dict[str, Callable[[_Executor, EngineOp], None]] = {
    "conv": _Executor.conv,
    "sdp": _Executor.sdp,
    "pdp": _Executor.pdp,
    "cdp": _Executor.cdp,
    "softmax": _Executor.softmax,
    "rubik": _Executor.rubik,
    "bdma": _Executor.bdma,
}


# ----- array kernels (exact for integer-valued float64 inputs) ---------------------------
# An int8 x int8 product is at most 128 * 127 < 2**14, so a float32 sum of up to 1024 of them
# stays below 2**24 and is exact in any order; longer sums go in 1024-term chunks whose
# results add up exactly in float64 (< 2**53).
EXACT_CHUNK = 1024


def _mm(a: Array, b: Array, exact: bool) -> Array:
    """``a @ b`` -- for integer-valued float32 operands, exactly (see EXACT_CHUNK)."""
    k = a.shape[-1]
    if not exact or k <= EXACT_CHUNK:
        return np.matmul(a, b)
    total = np.zeros(a.shape[:-1] + b.shape[-1:], dtype=np.float64)
    for start in range(0, k, EXACT_CHUNK):
        stop = start + EXACT_CHUNK
        total += np.matmul(a[..., start:stop], b[..., start:stop, :])
    return total


def _conv_core(
    x: Array, w: Array, p: dict[str, Any], out_shape: list[int], exact: bool = False
) -> Array:
    if p["kind"] == "fc":
        k = w.shape[0]
        lead = x.shape[:-1] if len(out_shape) == x.ndim else (x.shape[0],)
        y = _mm(x.reshape(-1, w.shape[1]), w.T, exact)
        return y.reshape(*lead, k).reshape(out_shape)
    if p["kind"] == "deconv":
        return _deconv2d(x, w, p, out_shape, exact)
    return _conv2d(x, w, p["strides"], p["pads"], p["dilations"], p["group"], exact)


def _conv2d(
    x: Array,
    w: Array,
    strides: list[int],
    pads: list[int],
    dil: list[int],
    group: int,
    exact: bool = False,
) -> Array:
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    sh, sw = strides
    dh, dw = dil
    pt, pl, pb, pr = pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if any(pads) else x
    ekh, ekw = (r - 1) * dh + 1, (s - 1) * dw + 1
    P = (h + pt + pb - ekh) // sh + 1
    Q = (wd + pl + pr - ekw) // sw + 1
    if group == 1 and r == s == 1:
        cols = xp[:, :, : (P - 1) * sh + 1 : sh, : (Q - 1) * sw + 1 : sw]
        out = _mm(cols.transpose(0, 2, 3, 1).reshape(-1, c), w.reshape(k, c).T, exact)
        return out.reshape(n, P, Q, k).transpose(0, 3, 1, 2)
    if group == c and cg == 1 and k == c:  # depth-wise: one tap at a time, vectorised
        # (r * s <= 1024 taps: the float32 sums of int8 products stay exact)
        out = np.zeros((n, c, P, Q), dtype=x.dtype)
        for i in range(r):
            for j in range(s):
                tap = xp[
                    :,
                    :,
                    i * dh : i * dh + (P - 1) * sh + 1 : sh,
                    j * dw : j * dw + (Q - 1) * sw + 1 : sw,
                ]
                out += tap * w[:, 0, i, j].reshape(1, c, 1, 1)
        return out
    win = sliding_window_view(xp, (ekh, ekw), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    win = win[:, :, :P, :Q]
    if group == 1:
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * P * Q, c * r * s)
        out = _mm(cols, w.reshape(k, -1).T, exact)
        return out.reshape(n, P, Q, k).transpose(0, 3, 1, 2)
    kg = k // group
    cols = win.reshape(n, group, cg, P, Q, r, s).transpose(1, 0, 3, 4, 2, 5, 6)
    cols = cols.reshape(group, n * P * Q, cg * r * s)
    wg = w.reshape(group, kg, cg * r * s).transpose(0, 2, 1)
    out = _mm(cols, wg, exact)
    return out.reshape(group, n, P, Q, kg).transpose(1, 0, 4, 2, 3).reshape(n, k, P, Q)


def _deconv2d(
    x: Array, w: Array, p: dict[str, Any], out_shape: list[int], exact: bool = False
) -> Array:
    """ConvTranspose with weights stored (K, C, R, S): scatter one kernel tap at a time."""
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    sh, sw = p["strides"]
    dh, dw = p["dilations"]
    pt, pl = p["pads"][0], p["pads"][1]
    full_h = max((h - 1) * sh + (r - 1) * dh + 1, pt + out_shape[2])
    full_w = max((wd - 1) * sw + (s - 1) * dw + 1, pl + out_shape[3])
    full = np.zeros((n, k, full_h, full_w), dtype=np.float64 if exact else x.dtype)
    xt = x.transpose(0, 2, 3, 1).reshape(-1, c)
    for i in range(r):
        for j in range(s):
            contrib = _mm(xt, w[:, :, i, j].T, exact).reshape(n, h, wd, k).transpose(0, 3, 1, 2)
            full[
                :,
                :,
                i * dh : i * dh + (h - 1) * sh + 1 : sh,
                j * dw : j * dw + (wd - 1) * sw + 1 : sw,
            ] += contrib
    return full[:, :, pt : pt + out_shape[2], pl : pl + out_shape[3]]


def _pool(x: Array, p: dict[str, Any]) -> Array:
    kh, kw = p["kernel"]
    sh, sw = p["strides"]
    pt, pl, pb, pr = p["pads"]
    if p["mode"] == "max":
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=-np.inf)
        win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        return win.max(axis=(-1, -2))
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    total = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw].sum(axis=(-1, -2))
    h, w = x.shape[2], x.shape[3]
    if p.get("count_include_pad"):
        # Padding declared by the layer counts; the ceil-mode extension does not.
        dp = p.get("pads_declared", [pt, pl, pb, pr])
        ones = np.pad(
            np.ones((h + dp[0] + dp[2], w + dp[1] + dp[3])),
            ((pt - dp[0], pb - dp[2]), (pl - dp[1], pr - dp[3])),
        )
    else:
        ones = np.pad(np.ones((h, w)), ((pt, pb), (pl, pr)))
    count = sliding_window_view(ones, (kh, kw))[::sh, ::sw].sum(axis=(-1, -2))
    return total / count.astype(x.dtype)


def _resize(x: Array, out_shape: list[int], p: dict[str, Any]) -> Array:
    """Nearest or (bi)linear resize of H and W, ONNX coordinate conventions."""
    ctm = p["coordinate_transformation_mode"]
    y = x
    for axis in (2, 3):
        n_in, n_out = x.shape[axis], out_shape[axis]
        scale = n_out / n_in
        o = np.arange(n_out, dtype=np.float64)
        if ctm == "align_corners":
            src = o * (n_in - 1) / max(n_out - 1, 1)
        elif ctm == "asymmetric":
            src = o / scale
        elif ctm == "pytorch_half_pixel" and n_out == 1:
            src = np.zeros_like(o)
        else:  # half_pixel, pytorch_half_pixel
            src = (o + 0.5) / scale - 0.5
        if p["mode"] == "nearest":
            mode = p["nearest_mode"]
            if mode == "floor":
                idx = np.floor(src)
            elif mode == "ceil":
                idx = np.ceil(src)
            elif mode == "round_prefer_ceil":
                idx = np.floor(src + 0.5)
            else:  # round_prefer_floor
                idx = np.ceil(src - 0.5)
            y = np.take(y, np.clip(idx, 0, n_in - 1).astype(np.int64), axis=axis)
        else:
            src = np.clip(src, 0, n_in - 1)
            lo = np.floor(src).astype(np.int64)
            hi = np.minimum(lo + 1, n_in - 1)
            frac = (src - lo).astype(y.dtype)
            shape = [1] * y.ndim
            shape[axis] = -1
            frac = frac.reshape(shape)
            y = np.take(y, lo, axis=axis) * (1 - frac) + np.take(y, hi, axis=axis) * frac
    return y


__all__ = ["run_loadable"]
