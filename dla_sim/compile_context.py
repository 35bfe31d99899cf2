"""What one DLA compilation shares between its lowering steps, and the error they raise.

``compiler`` drives a compilation; ``conv_lowering`` and ``engine_lowering`` lower single engine
operations. They all read the same segment, hardware and label and append to the same blob and
tensor tables, so that state lives here, below all three, rather than in the driver (which would
make the lowering modules import their own caller).
"""

from __future__ import annotations

import numpy as np

from dla_sim.hardware import DlaConfig
from dla_sim.loadable import TensorDesc
from partitioner.errors import TandemError
from partitioner.ir import Graph, Node, Tensor


class DlaCompileError(TandemError):
    """A layer cannot be compiled for the DLA (unsupported op, parameters out of range)."""


class CompileContext:
    """The segment being compiled, its target DLA, and the loadable's tables as they fill."""

    def __init__(
        self,
        graph: Graph,
        precision: str,
        cfg: DlaConfig,
        scales: dict[str, float],
        label: str,
        output_dtype: str | None,
    ) -> None:
        self.graph = graph
        self.precision = precision
        self.cfg = cfg
        self.scales = scales
        self.label = label
        self.output_dtype = output_dtype
        self.blobs: dict[str, np.ndarray] = {}
        self.tensors: dict[str, TensorDesc] = {}
        self.metadata_only = False
        self.layer_precisions: dict[str, str] = {}

    def fail(self, node: Node, what: str) -> DlaCompileError:
        return DlaCompileError(
            f"loadable '{self.label}': layer '{node.name}' ({node.op}) cannot run on DLA "
            f"{self.cfg.version}: {what}"
        )

    def shape_of(self, t: Tensor, node: Node) -> list[int]:
        if not t.is_static:
            raise self.fail(
                node,
                f"tensor '{t.name}' has no static shape ({t.shape}); the DLA "
                "has no dynamic shapes -- give the model fixed input shapes",
            )
        return list(t.static_shape())

    def add_blob(self, name: str, values: np.ndarray) -> str:
        self.blobs[name] = np.ascontiguousarray(values)
        return name
