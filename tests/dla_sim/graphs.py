"""Tiny hand-built IR graphs for the DLA emulator tests (no ONNX, no zoo)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from partitioner.ir import Graph, Tensor


class Builder:
    """Append layers to a graph, giving every tensor its static shape."""

    def __init__(self, name: str = "g") -> None:
        self.g = Graph(name)
        self._n = 0

    def input(self, name: str, shape: Sequence[int]) -> Tensor:
        return self.g.add_input(name, tuple(shape), "float32")

    def const(self, values: Any, name: str = "c") -> Tensor:
        self._n += 1
        return self.g.add_constant(f"{name}{self._n}", np.asarray(values))

    def op(
        self,
        op: str,
        inputs: Sequence[Tensor | None],
        shape: Sequence[int],
        name: str | None = None,
        **attrs: Any,
    ) -> Tensor:
        self._n += 1
        label = name or f"{op.lower()}{self._n}"
        out = self.g.add_variable(f"{label}_out", tuple(shape), "float32")
        self.g.add_node(op, list(inputs), [out], attrs, name=label)
        return out

    def conv(
        self,
        x: Tensor,
        w: np.ndarray,
        b: np.ndarray | None = None,
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        group: int = 1,
        dilations: Sequence[int] = (1, 1),
        name: str | None = None,
    ) -> Tensor:
        n, _, h, wd = x.static_shape()
        k, _, r, s = w.shape
        p = (h + pads[0] + pads[2] - ((r - 1) * dilations[0] + 1)) // strides[0] + 1
        q = (wd + pads[1] + pads[3] - ((s - 1) * dilations[1] + 1)) // strides[1] + 1
        ins = [x, self.const(w.astype(np.float32), "w")]
        if b is not None:
            ins.append(self.const(b.astype(np.float32), "b"))
        return self.op(
            "Conv",
            ins,
            (n, k, p, q),
            name=name,
            kernel_shape=[r, s],
            strides=list(strides),
            pads=list(pads),
            dilations=list(dilations),
            group=group,
        )

    def output(self, *tensors: Tensor) -> Graph:
        for t in tensors:
            self.g.mark_output(t)
        self.g.lint()
        return self.g
