"""How many bytes a run holds at its peak, from inferred shapes and dtypes, before it allocates.

The walk follows the numpy reference's interpreter (``devices.cpu.CpuRunner``): inputs are live
throughout (their caller holds them), a layer's outputs become live when it runs, and a tensor
is freed after its last reader; tensors listed as ``keep`` (graph outputs, a plan's segment
boundaries) stay to the end.
Constants are not counted: they are in memory already once the model is loaded. Temporaries
inside a layer (an im2col buffer, say) are not modelled either; the runtime's budget leaves room
for them. A tensor whose shape is not known statically is listed in ``unknown``, not counted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from partitioner.ir import Dim, Graph, Shape
from partitioner.validate import tensor_bytes

TensorInfo = tuple[Shape | None, str | None]  # (shape, dtype)


@dataclass(frozen=True)
class Step:
    """One layer as the walk sees it: what it reads and writes, by tensor name."""

    layer: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Footprint:
    peak_bytes: int  # live activation bytes at the high-water mark
    at_layer: str | None  # the layer whose outputs made the peak (None: the inputs alone)
    largest: str | None  # the largest tensor by bytes
    largest_bytes: int
    largest_shape: Shape | None
    largest_dtype: str | None
    output_bytes: int  # of the tensors kept to the end
    unknown: tuple[str, ...]  # tensors whose size shapes do not tell


def estimate(
    steps: Sequence[Step],
    tensors: Mapping[str, TensorInfo],
    inputs: Iterable[str],
    keep: Collection[str],
) -> Footprint:
    """The peak of live bytes over ``steps`` run in order, ``inputs`` live from the start.

    ``tensors`` gives each activation's shape and dtype; names missing from it (constants) cost
    nothing."""
    sizes: dict[str, int] = {}
    unknown: list[str] = []
    for name, (shape, dtype) in tensors.items():
        size = tensor_bytes(shape, dtype)
        if size is None:
            unknown.append(name)
        else:
            sizes[name] = size
    last_use: dict[str, int] = {}
    for i, step in enumerate(steps):
        for name in step.inputs:
            last_use[name] = i
    fed = set(inputs)  # the caller holds its feeds for the whole run
    live = set(fed)
    held = fed | set(keep)
    current = sum(sizes.get(name, 0) for name in live)
    peak, at = current, None
    for i, step in enumerate(steps):
        for name in step.outputs:
            if name not in live:
                live.add(name)
                current += sizes.get(name, 0)
        if current > peak:
            peak, at = current, step.layer
        for name in set(step.inputs) | set(step.outputs):
            if name in live and name not in held and last_use.get(name, -1) <= i:
                live.discard(name)
                current -= sizes.get(name, 0)
    largest = max(sizes, key=lambda n: sizes[n], default=None)
    info = tensors[largest] if largest is not None else (None, None)
    return Footprint(
        peak_bytes=peak,
        at_layer=at,
        largest=largest,
        largest_bytes=sizes.get(largest, 0) if largest is not None else 0,
        largest_shape=info[0],
        largest_dtype=info[1],
        output_bytes=sum(sizes.get(name, 0) for name in keep),
        unknown=tuple(unknown),
    )


def bind_symbols(
    declared: Mapping[str, Shape | None], given: Mapping[str, Sequence[int]]
) -> dict[str, int]:
    """Symbol values implied by concrete input shapes (``{"batch": 4}``)."""
    binding: dict[str, int] = {}
    for name, shape in given.items():
        for d, value in zip(declared.get(name) or (), shape):
            if isinstance(d, str) and isinstance(value, int):
                binding.setdefault(d, int(value))
    return binding


def bound(shape: Shape | None, binding: Mapping[str, int]) -> Shape | None:
    """``shape`` with bound symbols replaced by their values."""
    if shape is None:
        return None
    dims: list[Dim] = [binding.get(d, d) if isinstance(d, str) else d for d in shape]
    return tuple(dims)


def graph_footprint(
    graph: Graph, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> Footprint:
    """The peak activation bytes of running ``graph`` on the reference backend, with its inputs
    at ``input_shapes`` (default: as declared; symbols they fix are bound everywhere)."""
    given = dict(input_shapes or {})
    binding = bind_symbols({t.name: t.shape for t in graph.inputs}, given)
    constants = {t.name for t in graph.constants()}
    tensors: dict[str, TensorInfo] = {}
    for t in graph.tensors.values():
        if t.name in constants:
            continue
        shape = tuple(given[t.name]) if t.name in given else bound(t.shape, binding)
        tensors[t.name] = (shape, t.dtype)
    steps = [
        Step(
            n.name,
            tuple(t.name for t in n.inputs if t is not None and t.name not in constants),
            tuple(t.name for t in n.outputs),
        )
        for n in graph.topological_order()
    ]
    keep = {t.name for t in graph.outputs if t.name not in constants}
    return estimate(steps, tensors, [t.name for t in graph.inputs], keep)
