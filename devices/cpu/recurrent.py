"""Recurrent layers: RNN, GRU, LSTM (what paddle2onnx writes for CRNN text recognisers).

One time loop serves the three: per direction it walks the sequence (backwards for ``reverse``
and the second half of ``bidirectional``), each batch entry only over its own
``sequence_lens`` (steps past it output zeros and keep the state), and calls the op's cell.
Gate order, activations (with ``activation_alpha`` / ``activation_beta``), ``clip``,
``input_forget``, ``linear_before_reset`` and ``layout`` follow the ONNX spec; a batch entry
with sequence length 0 ends in a zero state (not its initial state), as ONNX Runtime has it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from devices.cpu.elementwise import _sigmoid
from devices.cpu.registry import attr_str, register
from partitioner.ir import Node

Act = Callable[[np.ndarray], np.ndarray]
# name -> (how many of alpha / beta it takes, its defaults, the function of (x, alpha, beta))
_ACTS: dict[str, tuple[int, tuple[float, float], Callable[[np.ndarray, float, float], Any]]] = {
    "Sigmoid": (0, (0, 0), lambda x, a, b: _sigmoid(x)),
    "Tanh": (0, (0, 0), lambda x, a, b: np.tanh(x)),
    "Relu": (0, (0, 0), lambda x, a, b: np.maximum(x, 0)),
    "Softsign": (0, (0, 0), lambda x, a, b: x / (1 + np.abs(x))),
    "Softplus": (0, (0, 0), lambda x, a, b: np.logaddexp(0, x)),
    "LeakyRelu": (1, (0.01, 0), lambda x, a, b: np.where(x >= 0, x, a * x)),
    "ThresholdedRelu": (1, (1.0, 0), lambda x, a, b: np.where(x > a, x, 0)),
    "Elu": (1, (1.0, 0), lambda x, a, b: np.where(x >= 0, x, a * np.expm1(x))),
    "HardSigmoid": (2, (0.2, 0.5), lambda x, a, b: np.clip(a * x + b, 0, 1)),
    "Affine": (2, (1.0, 0.0), lambda x, a, b: a * x + b),
    "ScaledTanh": (2, (1.0, 1.0), lambda x, a, b: a * np.tanh(b * x)),
}


def _activations(node: Node, defaults: list[str], dirs: int) -> list[list[Act]]:
    """Per direction, the op's activation functions (attributes or the op's defaults)."""
    names = node.attrs.get("activations")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names else None
    names = names or defaults * dirs
    if len(names) == len(defaults) and dirs == 2:
        names = names * 2
    if len(names) != len(defaults) * dirs:
        raise ValueError(f"activations {names}: expected {len(defaults) * dirs} names")
    alphas = list(node.attrs.get("activation_alpha", []) or [])
    betas = list(node.attrs.get("activation_beta", []) or [])
    funcs: list[Act] = []
    for name in names:
        key = next((k for k in _ACTS if k.lower() == name.lower()), None)
        if key is None:
            raise ValueError(f"activation '{name}' is not one of {', '.join(_ACTS)}")
        takes, (a, b), fn = _ACTS[key]
        if takes >= 1 and alphas:
            a = float(alphas.pop(0))
        if takes >= 2 and betas:
            b = float(betas.pop(0))
        funcs.append(lambda x, fn=fn, a=a, b=b: fn(x, np.float32(a), np.float32(b)))
    k = len(defaults)
    return [funcs[d * k : (d + 1) * k] for d in range(dirs)]


def _opt(inputs: list[Any], i: int) -> np.ndarray | None:
    return inputs[i] if len(inputs) > i and inputs[i] is not None else None


# A cell: (x-projection, h, extra state, weights of one direction, activations) -> (h, extra).
Cell = Callable[..., tuple[np.ndarray, np.ndarray | None]]


def _run(node: Node, inputs: list[Any], gates: int, defaults: list[str], cell: Cell,
         has_cell_state: bool) -> list[np.ndarray]:  # fmt: skip
    x, w, r = inputs[0], inputs[1], inputs[2]
    layout = int(node.attrs.get("layout", 0))
    if x.ndim != 3:
        raise ValueError(f"X must be 3-D, got {x.shape}")
    dtype = np.float32 if x.dtype == np.float16 else x.dtype
    xs = (x.transpose(1, 0, 2) if layout else x).astype(dtype)
    steps, batch, _ = xs.shape
    dirs = w.shape[0]
    hidden = int(node.attrs.get("hidden_size", r.shape[-1]))
    direction = attr_str(node, "direction", "forward")
    if dirs != (2 if direction == "bidirectional" else 1):
        raise ValueError(f"W has {dirs} directions; direction '{direction}' needs "
                         f"{2 if direction == 'bidirectional' else 1}")  # fmt: skip
    if w.shape[1] != gates * hidden or r.shape[1:] != (gates * hidden, hidden):
        raise ValueError(f"W {w.shape} / R {r.shape} do not fit hidden_size {hidden}")
    b = _opt(inputs, 3)
    lens_in = _opt(inputs, 4)
    h0, c0 = _opt(inputs, 5), _opt(inputs, 6) if has_cell_state else None
    peep = _opt(inputs, 7) if has_cell_state else None
    if layout:
        h0 = h0.transpose(1, 0, 2) if h0 is not None else None
        c0 = c0.transpose(1, 0, 2) if c0 is not None else None
    lens = np.full(batch, steps, np.int64) if lens_in is None else lens_in.astype(np.int64)
    if lens.shape != (batch,) or (lens < 0).any() or (lens > steps).any():
        raise ValueError(f"sequence_lens {lens.tolist()} must be {batch} values in [0, {steps}]")
    acts = _activations(node, defaults, dirs)
    clip = node.attrs.get("clip")
    y = np.zeros((steps, dirs, batch, hidden), dtype)
    y_h = np.zeros((dirs, batch, hidden), dtype)
    y_c = np.zeros((dirs, batch, hidden), dtype)
    rows = np.arange(batch)
    for d in range(dirs):
        backwards = direction == "reverse" or d == 1
        wd, rd = w[d].astype(dtype), r[d].astype(dtype)
        bd = b[d].astype(dtype) if b is not None else np.zeros(2 * gates * hidden, dtype)
        weights = {"w": wd, "r": rd, "wb": bd[: gates * hidden], "rb": bd[gates * hidden :],
                   "p": peep[d].astype(dtype) if peep is not None else None,
                   "clip": None if clip is None else float(clip)}  # fmt: skip
        h = h0[d].astype(dtype) if h0 is not None else np.zeros((batch, hidden), dtype)
        c = c0[d].astype(dtype) if c0 is not None else np.zeros((batch, hidden), dtype)
        proj = xs @ wd.T  # (steps, batch, gates * hidden)
        for t in range(steps):
            valid = t < lens
            at = np.where(valid, (lens - 1 - t) if backwards else t, 0)
            new_h, new_c = cell(proj[at, rows], h, c, weights, acts[d], node)
            h = np.where(valid[:, None], new_h, h)
            if new_c is not None:
                c = np.where(valid[:, None], new_c, c)
            y[at, d, rows] = np.where(valid[:, None], h, y[at, d, rows])
        empty = (lens == 0)[:, None]  # as ONNX Runtime: no step taken -> zero final state
        y_h[d], y_c[d] = np.where(empty, 0, h), np.where(empty, 0, c)
    out_dtype = x.dtype
    if layout:
        outs = [y.transpose(2, 0, 1, 3), y_h.transpose(1, 0, 2), y_c.transpose(1, 0, 2)]
    else:
        outs = [y, y_h, y_c]
    outs = outs if has_cell_state else outs[:2]
    return [o.astype(out_dtype, copy=False) for o in outs]


def _clip(v: np.ndarray, clip: float | None) -> np.ndarray:
    return v if clip is None else np.clip(v, -clip, clip)


def _rnn_cell(xp, h, c, wt, acts, node):  # type: ignore[no-untyped-def]
    pre = xp + h @ wt["r"].T + wt["wb"] + wt["rb"]
    return acts[0](_clip(pre, wt["clip"])), None


def _gru_cell(xp, h, c, wt, acts, node):  # type: ignore[no-untyped-def]
    f, g = acts
    hs = h.shape[1]
    r_mat, rb, wb = wt["r"], wt["rb"], wt["wb"]
    xz, xr, xh = xp[:, :hs], xp[:, hs : 2 * hs], xp[:, 2 * hs :]
    z = f(_clip(xz + h @ r_mat[:hs].T + wb[:hs] + rb[:hs], wt["clip"]))
    rg = f(_clip(xr + h @ r_mat[hs : 2 * hs].T + wb[hs : 2 * hs] + rb[hs : 2 * hs], wt["clip"]))
    if int(node.attrs.get("linear_before_reset", 0)):
        hh = xh + rg * (h @ r_mat[2 * hs :].T + rb[2 * hs :]) + wb[2 * hs :]
    else:
        hh = xh + (rg * h) @ r_mat[2 * hs :].T + rb[2 * hs :] + wb[2 * hs :]
    cand = g(_clip(hh, wt["clip"]))
    return (1 - z) * cand + z * h, None


def _lstm_cell(xp, h, c, wt, acts, node):  # type: ignore[no-untyped-def]
    f, g, hf = acts
    hs = h.shape[1]
    pre = xp + h @ wt["r"].T + wt["wb"] + wt["rb"]  # gates i, o, f, c
    p = wt["p"]
    pi, po, pf = (p[:hs], p[hs : 2 * hs], p[2 * hs :]) if p is not None else (0, 0, 0)
    clip = wt["clip"]
    i = f(_clip(pre[:, :hs] + pi * c, clip))
    if int(node.attrs.get("input_forget", 0)):
        fg = 1 - i
    else:
        fg = f(_clip(pre[:, 2 * hs : 3 * hs] + pf * c, clip))
    cand = g(_clip(pre[:, 3 * hs :], clip))
    c_new = fg * c + i * cand
    o = f(_clip(pre[:, hs : 2 * hs] + po * c_new, clip))
    return o * hf(c_new), c_new


@register("RNN")
def rnn(node: Node, inputs: list[Any]) -> list[np.ndarray]:
    return _run(node, inputs, 1, ["Tanh"], _rnn_cell, has_cell_state=False)


@register("GRU")
def gru(node: Node, inputs: list[Any]) -> list[np.ndarray]:
    return _run(node, inputs, 3, ["Sigmoid", "Tanh"], _gru_cell, has_cell_state=False)


@register("LSTM")
def lstm(node: Node, inputs: list[Any]) -> list[np.ndarray]:
    return _run(node, inputs, 4, ["Sigmoid", "Tanh", "Tanh"], _lstm_cell, has_cell_state=True)
