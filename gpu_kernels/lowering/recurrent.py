"""Recurrent layers: ONNX RNN, GRU and LSTM in the form exporters write (paddle2onnx's CRNN
text recognisers: bidirectional LSTMs with constant weights and default activations).

Two launches a layer, as TensorRT / cuDNN split it: the input projection of every time step
and direction is one batched GEMM (``bmm``: X[T*B, I] x W[d]^T for each direction d), then one
``rnn`` kernel (rnn.cu) runs the whole time loop, a thread block per (batch entry, direction).
The biases stay FP32 and are added in the recurrent kernel (bmm's bias is one vector for every
batch, but each direction has its own), as ONNX writes them: Wb and Rb apart, which GRU's
``linear_before_reset`` needs.

Refused (the CPU reference runs them): run-time weights, sequence_lens other than a constant
equal to the sequence length, non-default activations, ``clip``, ``input_forget`` and LSTM
peepholes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.program import Launch, Value
from gpu_kernels.lowering.registry import constant, register, tensor_ok
from partitioner.capability import Verdict
from partitioner.ir import Node

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering

# op -> (gates, default activations as ONNX names them)
_OPS = {"RNN": (1, ("tanh",)), "GRU": (3, ("sigmoid", "tanh")),
        "LSTM": (4, ("sigmoid", "tanh", "tanh"))}
# three H-float vectors of shared memory (rnn.cu) within the 48 KiB every arch gives unasked
MAX_HIDDEN = 4096


def _directions(node: Node) -> int:
    direction = node.attrs.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    return 2 if direction == "bidirectional" else 1


def _recurrent_ok(node: Node, arch: int, precision: str) -> Verdict:
    gates, defaults = _OPS[node.op]
    direction = node.attrs.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    if direction not in ("forward", "reverse", "bidirectional"):
        return Verdict.no(f"direction '{direction}' is not forward, reverse or bidirectional")
    w, r, b = constant(node, 1), constant(node, 2), constant(node, 3)
    if w is None or r is None:
        return Verdict.no("run-time weights W / R unsupported (they must be constants)")
    if node.input(3) is not None and b is None:
        return Verdict.no("run-time bias B unsupported (it must be a constant)")
    if node.input(4) is not None:
        lens = constant(node, 4)
        x = node.input(0)
        steps = None
        if x is not None and x.is_static and len(x.static_shape()) == 3:
            steps = x.static_shape()[int(node.attrs.get("layout", 0))]
        if lens is None:
            return Verdict.no("run-time sequence_lens unsupported (every sequence must run "
                              "the whole length; drop the input or make it a constant)")
        if steps is None or np.any(lens != steps):
            return Verdict.no(f"sequence_lens {lens.tolist()} shorter than the sequence "
                              "unsupported (only full-length sequences run on the GPU)")
    if node.op == "LSTM" and node.input(7) is not None:
        return Verdict.no("peepholes (input P) unsupported")
    names = node.attrs.get("activations")
    if names:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        # one direction's list serves both of a bidirectional layer (as the CPU reference)
        if [n.lower() for n in names] not in (list(defaults), list(defaults) * _directions(node)):
            return Verdict.no(f"activations {names} unsupported (only the defaults "
                              f"{', '.join(d.capitalize() for d in defaults)})")
    if node.attrs.get("clip") is not None:
        return Verdict.no("clip unsupported")
    if int(node.attrs.get("input_forget", 0)):
        return Verdict.no("input_forget unsupported")
    layout = int(node.attrs.get("layout", 0))
    if layout not in (0, 1):
        return Verdict.no(f"layout {layout} is not 0 or 1")
    dirs = _directions(node)
    if w.ndim != 3 or r.ndim != 3 or w.shape[0] != dirs or r.shape[0] != dirs:
        return Verdict.no(f"W {w.shape} / R {r.shape} do not have {dirs} direction(s)")
    hidden = r.shape[2]
    if int(node.attrs.get("hidden_size") or hidden) != hidden \
            or r.shape[1] != gates * hidden or w.shape[1] != gates * hidden:
        return Verdict.no(f"W {w.shape} / R {r.shape} do not fit hidden_size {hidden}")
    if b is not None and b.shape != (dirs, 2 * gates * hidden):
        return Verdict.no(f"B of shape {b.shape} is not ({dirs}, {2 * gates * hidden})")
    if hidden > MAX_HIDDEN:
        return Verdict.no(f"hidden_size {hidden} > {MAX_HIDDEN} (the state lives in one "
                          "thread block's shared memory)")
    x = node.input(0)
    if x is not None and len(x.static_shape()) != 3:
        return Verdict.no(f"X must be 3-D, got shape {x.static_shape()}")
    for i in (5, 6) if node.op == "LSTM" else (5,):  # initial_h (, initial_c): any float tensor
        t = node.input(i)
        if t is not None:
            verdict = tensor_ok(t, is_output=False)
            if not verdict:
                return verdict
    return Verdict.yes()


@register("RNN", "GRU", "LSTM", supports=_recurrent_ok)
def lower_recurrent(lw: Lowering, node: Node) -> None:
    gates = _OPS[node.op][0]
    w, r, b = constant(node, 1), constant(node, 2), constant(node, 3)
    assert w is not None and r is not None  # _recurrent_ok made sure
    layout = int(node.attrs.get("layout", 0))
    dirs, hidden = w.shape[0], r.shape[2]
    gh = gates * hidden
    x = lw.ensure(lw.value(node.input(0), node), "plain", lw.dt, node.name)
    if layout:
        batch, steps, isize = x.shape
        p_t, p_b = 1, steps  # projection rows follow X's (batch, time) order
    else:
        steps, batch, isize = x.shape
        p_t, p_b = batch, 1
    rows = steps * batch
    # the projection of every step and direction: one bmm, W[d] read as N x K (b_trans);
    # X is broadcast over the directions (stride 0)
    proj = lw.new_value((dirs, rows, gh), "plain")
    wref = lw.weight(np.ascontiguousarray(w, np.float32), lw.dt)
    ints = [dirs, rows, gh, isize, isize, isize, gh, 0, gh * isize, rows * gh, 0, 0, 1,
            1, 0, 0, 0]
    lw.emit(Launch(node.name, f"bmm_{lw.dt}", ((gh + 31) // 32, (rows + 31) // 32, dirs), 256,
                   [lw.ref(x), wref, None, lw.ref(proj)], ints, [0.0, 0.0, 1.0]))
    # R transposed per direction ([D][H (k)][G*H]): coalesced reads in the time loop
    rt = lw.weight(np.ascontiguousarray(np.transpose(r, (0, 2, 1)), np.float32), lw.dt)
    bias = b if b is not None else np.zeros((dirs, 2 * gh), np.float32)
    bref = lw.weight(np.ascontiguousarray(bias, np.float32))

    def state(i: int) -> Value | None:  # initial_h / initial_c, dense in the compute dtype
        t = node.input(i)
        if t is None:
            return None
        return lw.ensure(lw.value(t, node), "plain", lw.dt, node.name)

    h0 = state(5)
    c0 = state(6) if node.op == "LSTM" else None
    # Y, Y_h, Y_c where read (an output the exporter left out has no reader): the kernel
    # skips a null pointer, so a CRNN head that reads only Y_h writes no Y
    outs: list[Value | None] = []
    for i, t in enumerate(node.outputs):
        read = t is not None and (t.consumers or t in lw.graph.outputs)
        outs.append(lw.new_value(lw.out_shape(node, i), "plain") if read else None)
    outs += [None] * (3 - len(outs))
    if layout:  # Y [B, T, D, H]; states [B, D, H]
        y_t, y_d, y_b = dirs * hidden, hidden, steps * dirs * hidden
        s_d, s_b = hidden, dirs * hidden
    else:  # Y [T, D, B, H]; states [D, B, H]
        y_t, y_d, y_b = dirs * batch * hidden, batch * hidden, hidden
        s_d, s_b = batch * hidden, hidden
    direction = node.attrs.get("direction", "forward")
    reverse = int((direction.decode() if isinstance(direction, bytes) else direction)
                  == "reverse")
    ints = [steps, batch, hidden, gates, int(node.attrs.get("linear_before_reset", 0)),
            reverse, p_t, p_b, y_t, y_d, y_b, s_d, s_b]
    # a thread per hidden unit up to 256 (CRNN's sizes), more units a thread above: 256
    # threads launch whatever registers the kernel takes (256 x 255 fits an SM's 64K)
    threads = min(256, (hidden + 31) // 32 * 32)
    ptrs = [lw.ref(proj), rt, bref, *(lw.ref(v) if v is not None else None
                                     for v in (h0, c0, *outs))]
    lw.emit(Launch(node.name, f"rnn_{lw.dt}", (batch, dirs, 1), threads, ptrs, ints,
                   smem=3 * hidden * 4))
    for i, v in enumerate(outs):
        if v is not None:
            lw.bind(node, v, i)
