"""Graph IR: tensors, nodes (layers) and the graph that keeps their links consistent.

The IR never imports onnx: import and export live in ``onnx_import`` / ``onnx_export``.
Tensors are NCHW as ONNX has them. A tensor has at most one producer and any number of
consumers; the graph mutates links only through its own methods so ``producer`` and
``consumers`` can never disagree with ``Node.inputs`` / ``Node.outputs`` (``lint()`` checks it).

Dimensions are ``int`` when known, ``str`` when symbolic (``"batch"``), ``None`` when unknown.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from partitioner.errors import GraphError, InternalError

Dim = int | str | None
Shape = tuple[Dim, ...]


class Tensor:
    """A value flowing between nodes. Use :class:`Variable` or :class:`Constant`."""

    def __init__(self, name: str, shape: Shape | None = None, dtype: str | None = None) -> None:
        self.name = name
        self.shape: Shape | None = tuple(shape) if shape is not None else None
        self.dtype: str | None = dtype
        self.producer: Node | None = None
        self.consumers: list[Node] = []

    @property
    def is_static(self) -> bool:
        """True when every dimension is a known integer."""
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    def static_shape(self) -> tuple[int, ...]:
        if not self.is_static:
            raise GraphError(f"tensor '{self.name}' has a non-static shape {self.shape}")
        return tuple(int(d) for d in self.shape)  # type: ignore[arg-type, union-attr]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, shape={self.shape}, dtype={self.dtype})"


class Variable(Tensor):
    """A tensor computed at run time (graph input or a node's output)."""


class Constant(Tensor):
    """A tensor whose value is known at build time (weights, folded shapes)."""

    def __init__(self, name: str, values: np.ndarray) -> None:
        values = np.asarray(values)
        super().__init__(name, tuple(int(d) for d in values.shape), str(values.dtype))
        self.values = values


class Node:
    """One layer: an op type, attributes, and ordered input / output tensors.

    ``inputs`` may hold ``None`` for an omitted optional ONNX input. ``meta`` carries pass
    annotations (fusion groups, device, precision) that never change semantics.
    """

    def __init__(
        self,
        name: str,
        op: str,
        attrs: dict[str, Any] | None = None,
        domain: str = "",
    ) -> None:
        self.name = name
        self.op = op
        self.domain = domain
        self.attrs: dict[str, Any] = dict(attrs or {})
        self._inputs: list[Tensor | None] = []
        self._outputs: list[Tensor] = []
        self.meta: dict[str, Any] = {}

    @property
    def inputs(self) -> tuple[Tensor | None, ...]:
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Tensor, ...]:
        return tuple(self._outputs)

    def input(self, i: int) -> Tensor | None:
        """The i-th input, or None when absent (omitted optional input or out of range)."""
        return self._inputs[i] if i < len(self._inputs) else None

    def constant_input(self, i: int) -> np.ndarray | None:
        """The value of input i if it is a Constant, else None."""
        t = self.input(i)
        return t.values if isinstance(t, Constant) else None

    def __repr__(self) -> str:
        ins = ", ".join(t.name if t else "<none>" for t in self._inputs)
        outs = ", ".join(t.name for t in self._outputs)
        return f"Node({self.name!r}, {self.op}, [{ins}] -> [{outs}])"


class Graph:
    """An acyclic graph of nodes. Names of nodes and of tensors are each unique."""

    def __init__(self, name: str = "graph", opset: int = 17) -> None:
        self.name = name
        self.opset = opset
        self.nodes: list[Node] = []
        self.tensors: dict[str, Tensor] = {}
        self.inputs: list[Variable] = []
        self.outputs: list[Tensor] = []
        self.metadata: dict[str, str] = {}
        self._node_names: set[str] = set()
        self._by_name: dict[str, Node] = {}
        self._counter = itertools.count()

    # ----- names ---------------------------------------------------------------------------
    def unique_name(self, base: str, kind: str = "tensor") -> str:
        """A name starting with ``base`` that no tensor (or node) has yet; deterministic."""
        taken = self.tensors if kind == "tensor" else self._node_names
        if base and base not in taken:
            return base
        stem = re.sub(r"_\d+$", "", base) or kind
        while True:
            candidate = f"{stem}_{next(self._counter)}"
            if candidate not in taken:
                return candidate

    # ----- tensors -------------------------------------------------------------------------
    def add_variable(
        self, name: str, shape: Shape | None = None, dtype: str | None = None
    ) -> Variable:
        self._check_new_tensor(name)
        t = Variable(name, shape, dtype)
        self.tensors[name] = t
        return t

    def add_constant(self, name: str, values: np.ndarray) -> Constant:
        self._check_new_tensor(name)
        t = Constant(name, values)
        self.tensors[name] = t
        return t

    def add_input(self, name: str, shape: Shape, dtype: str = "float32") -> Variable:
        t = self.add_variable(name, shape, dtype)
        self.inputs.append(t)
        return t

    def mark_output(self, tensor: Tensor) -> None:
        if tensor.name not in self.tensors or self.tensors[tensor.name] is not tensor:
            raise GraphError(
                f"cannot mark '{tensor.name}' as output: it is not in graph '{self.name}'"
            )
        if tensor not in self.outputs:
            self.outputs.append(tensor)

    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise GraphError(f"graph '{self.name}' has no tensor named '{name}'") from None

    def _check_new_tensor(self, name: str) -> None:
        if not name:
            raise GraphError("a tensor needs a non-empty name")
        if name in self.tensors:
            raise GraphError(f"tensor name '{name}' is used twice in graph '{self.name}'")

    def remove_tensor(self, tensor: Tensor) -> None:
        if tensor.producer is not None or tensor.consumers:
            raise InternalError(f"cannot remove tensor '{tensor.name}': it is still connected")
        if tensor in self.inputs or tensor in self.outputs:
            raise InternalError(f"cannot remove tensor '{tensor.name}': it is a graph input/output")
        del self.tensors[tensor.name]

    # ----- nodes ---------------------------------------------------------------------------
    def add_node(
        self,
        op: str,
        inputs: Sequence[Tensor | None],
        outputs: Sequence[Tensor] | int = 1,
        attrs: dict[str, Any] | None = None,
        name: str | None = None,
        domain: str = "",
    ) -> Node:
        """Append a node. ``outputs`` is a list of new Variables, or a count to create."""
        node_name = self.unique_name(name or op.lower(), kind="node")
        if node_name in self._node_names:
            raise GraphError(f"node name '{node_name}' is used twice in graph '{self.name}'")
        node = Node(node_name, op, attrs, domain)
        if isinstance(outputs, int):
            outputs = [
                self.add_variable(self.unique_name(f"{node_name}_out{i}")) for i in range(outputs)
            ]
        for t in inputs:
            if t is not None:
                self._require_member(t)
                t.consumers.append(node)
            node._inputs.append(t)
        for t in outputs:
            self._require_member(t)
            if t.producer is not None:
                raise GraphError(
                    f"tensor '{t.name}' is produced twice: by '{t.producer.name}' and '{node_name}'"
                )
            if isinstance(t, Constant):
                raise GraphError(f"node '{node_name}' cannot produce constant '{t.name}'")
            t.producer = node
            node._outputs.append(t)
        self.nodes.append(node)
        self._node_names.add(node_name)
        self._by_name[node_name] = node
        return node

    def node(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            raise GraphError(f"graph '{self.name}' has no layer named '{name}'") from None

    def __contains__(self, node: object) -> bool:
        """``node in graph``: O(1), by identity (a same-named node of another graph is not in)."""
        return isinstance(node, Node) and self._by_name.get(node.name) is node

    def rename_node(self, node: Node, name: str) -> None:
        if node not in self:
            raise InternalError(f"cannot rename '{node.name}': it is not in graph '{self.name}'")
        if name == node.name:
            return
        if name in self._node_names:
            raise GraphError(f"layer name '{name}' is already used in graph '{self.name}'")
        self._node_names.discard(node.name)
        del self._by_name[node.name]
        node.name = name
        self._node_names.add(name)
        self._by_name[name] = node

    def rename_tensor(self, tensor: Tensor, name: str) -> None:
        """Links are object references, so only the name index changes."""
        self._require_member(tensor)
        if name == tensor.name:
            return
        self._check_new_tensor(name)
        del self.tensors[tensor.name]
        tensor.name = name
        self.tensors[name] = tensor

    def remove_node(self, node: Node, remove_dangling: bool = True) -> None:
        """Detach and drop a node; its outputs must have no consumers left (or be unused)."""
        for t in node._outputs:
            if t.consumers or t in self.outputs:
                raise InternalError(
                    f"cannot remove '{node.name}': its output '{t.name}' is still used"
                )
        for src in node._inputs:
            if src is not None:
                src.consumers.remove(node)
        for out in node._outputs:
            out.producer = None
            if remove_dangling:
                self.remove_tensor(out)
        if remove_dangling:
            for src in node._inputs:
                if src is not None and self._is_dangling(src):
                    self.remove_tensor(src)
        self.nodes.remove(node)
        self._node_names.discard(node.name)
        self._by_name.pop(node.name, None)
        node._inputs, node._outputs = [], []

    def _is_dangling(self, t: Tensor) -> bool:
        return (
            t.name in self.tensors
            and t.producer is None
            and not t.consumers
            and t not in self.inputs
            and t not in self.outputs
        )

    def set_input(self, node: Node, index: int, tensor: Tensor | None) -> None:
        """Rewire one input of ``node``; keeps consumer lists consistent."""
        old = node._inputs[index]
        if old is not None:
            old.consumers.remove(node)
        if tensor is not None:
            self._require_member(tensor)
            tensor.consumers.append(node)
        node._inputs[index] = tensor

    def set_inputs(self, node: Node, tensors: Sequence[Tensor | None]) -> None:
        for t in node._inputs:
            if t is not None:
                t.consumers.remove(node)
        node._inputs = []
        for t in tensors:
            if t is not None:
                self._require_member(t)
                t.consumers.append(node)
            node._inputs.append(t)

    def replace_all_uses(self, old: Tensor, new: Tensor) -> None:
        """Make every consumer of ``old`` (and the graph outputs) read ``new`` instead."""
        for consumer in list(old.consumers):
            for i, t in enumerate(consumer._inputs):
                if t is old:
                    self.set_input(consumer, i, new)
        self.outputs = [new if t is old else t for t in self.outputs]

    def _require_member(self, t: Tensor) -> None:
        if self.tensors.get(t.name) is not t:
            raise GraphError(f"tensor '{t.name}' does not belong to graph '{self.name}'")

    # ----- order and checks ----------------------------------------------------------------
    def toposort(self) -> None:
        """Reorder ``nodes`` topologically, stably (ties keep their current order)."""
        self.nodes = self.topological_order()

    def topological_order(self) -> list[Node]:
        position = {id(n): i for i, n in enumerate(self.nodes)}
        indegree = {id(n): 0 for n in self.nodes}
        for n in self.nodes:
            indegree[id(n)] = len({id(t.producer) for t in n._inputs if t and t.producer})
        ready = [(position[id(n)], n.name, n) for n in self.nodes if indegree[id(n)] == 0]
        heapq.heapify(ready)
        order: list[Node] = []
        while ready:
            _, _, n = heapq.heappop(ready)
            order.append(n)
            successors = {id(c): c for t in n._outputs for c in t.consumers}
            for c in successors.values():
                indegree[id(c)] -= 1
                if indegree[id(c)] == 0:
                    heapq.heappush(ready, (position[id(c)], c.name, c))
        if len(order) != len(self.nodes):
            stuck = sorted(n.name for n in self.nodes if n not in order)
            shown = ", ".join(stuck[:10]) + (" ..." if len(stuck) > 10 else "")
            raise GraphError(f"graph '{self.name}' has a cycle through layers: {shown}")
        return order

    def lint(self) -> None:
        """Check well-formedness; raise GraphError (or InternalError for broken links)."""
        names: set[str] = set()
        for n in self.nodes:
            if n.name in names:
                raise GraphError(f"layer name '{n.name}' is used twice")
            names.add(n.name)
            for t in n._inputs:
                if t is None:
                    continue
                if self.tensors.get(t.name) is not t:
                    raise InternalError(f"'{n.name}' reads '{t.name}', which is not in the graph")
                if n not in t.consumers:
                    raise InternalError(f"'{t.name}' does not list its consumer '{n.name}'")
            for t in n._outputs:
                if t.producer is not n:
                    raise InternalError(f"'{t.name}' does not name '{n.name}' as its producer")
        for t in self.tensors.values():
            if t.producer is not None and t.producer not in self:
                raise InternalError(f"'{t.name}' names a producer outside the graph")
            for c in t.consumers:
                if t not in c._inputs:
                    raise InternalError(
                        f"'{t.name}' lists '{c.name}' as consumer, which does not read it"
                    )
            if (
                isinstance(t, Variable)
                and t.producer is None
                and t not in self.inputs
                and t.consumers
            ):
                raise GraphError(f"tensor '{t.name}' is read but nothing produces it")
        for t in self.outputs:
            if self.tensors.get(t.name) is not t:
                raise GraphError(f"graph output '{t.name}' is not in the graph")
        self.topological_order()

    # ----- queries -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def constants(self) -> Iterable[Constant]:
        return (t for t in self.tensors.values() if isinstance(t, Constant))

    def successors(self, node: Node) -> list[Node]:
        seen: dict[int, Node] = {}
        for t in node._outputs:
            for c in t.consumers:
                seen.setdefault(id(c), c)
        return list(seen.values())

    def predecessors(self, node: Node) -> list[Node]:
        seen: dict[int, Node] = {}
        for t in node._inputs:
            if t is not None and t.producer is not None:
                seen.setdefault(id(t.producer), t.producer)
        return list(seen.values())

    def clone(self) -> Graph:
        """A deep copy with the same names (constant arrays are shared, not copied)."""
        g = Graph(self.name, self.opset)
        g.metadata = dict(self.metadata)
        for t in self.tensors.values():
            if isinstance(t, Constant):
                g.add_constant(t.name, t.values)
            else:
                g.add_variable(t.name, t.shape, t.dtype)
        g.inputs = [g.tensors[t.name] for t in self.inputs]  # type: ignore[misc]
        for n in self.nodes:
            new = g.add_node(
                n.op,
                [g.tensors[t.name] if t else None for t in n.inputs],
                [g.tensors[t.name] for t in n.outputs],
                dict(n.attrs),
                name=n.name,
                domain=n.domain,
            )
            new.meta = dict(n.meta)
        g.outputs = [g.tensors[t.name] for t in self.outputs]
        return g

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.nodes)} nodes, opset {self.opset})"
