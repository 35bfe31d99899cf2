"""``OnnxParser``: fills a :class:`~tandem.network.NetworkDefinition` from an ONNX model, as
TensorRT's ``OnnxParser`` does (the model becomes the network's IR graph, symbolic dims kept)."""

from __future__ import annotations

import os
from typing import Any

from partitioner.errors import GraphError, ModelError, TandemError
from tandem.network import NetworkDefinition
from tandem.trt_names import TrtApi


class OnnxParser(TrtApi):
    """Fills a network from an ONNX model (TensorRT's ``OnnxParser``): symbolic dims are kept.

    As in TensorRT, ``parse*`` return False on failure and the errors are kept
    (``num_errors`` / ``get_error(i)``); ``raise_errors=True`` raises them instead.
    """

    _trt_api = "OnnxParser"

    def __init__(
        self, network: NetworkDefinition, logger: Any = None, raise_errors: bool = False
    ) -> None:
        self.network = network
        self.logger = logger
        self.raise_errors = raise_errors
        self.errors: list[str] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    def clear_errors(self) -> None:
        self.errors = []

    def parse_from_file(self, path: str | os.PathLike[str]) -> bool:
        return self._parse(path, str(path))

    def parse(self, model: bytes) -> bool:
        import onnx

        try:
            proto = onnx.load_from_string(model)
        except Exception as err:  # protobuf's DecodeError and friends
            return self._fail(ModelError(f"<bytes>: not an ONNX model ({err})"))
        return self._parse(proto, "<bytes>")

    def _parse(self, source: Any, label: str) -> bool:
        from partitioner.onnx_import import import_onnx

        if self.network.graph.nodes or self.network.graph.inputs:
            return self._fail(GraphError("the network already has layers; parse into a new one"))
        try:
            graph = import_onnx(source)
        except TandemError as err:
            return self._fail(err)
        self.network.graph = graph
        self.network.source = label
        self.network._dirty = True
        return True

    def _fail(self, err: TandemError) -> bool:
        if self.raise_errors:
            raise err
        self.errors.append(str(err))
        return False
