"""Dynamic input dimensions and the values they are bound to.

A dimension of a graph input is *dynamic* when the model leaves it open, in any of the forms
ONNX Runtime accepts: a named ``dim_param`` (``"batch"``), a ``dim_param`` of ``"?"`` or ``""``,
a dim with neither field, or ``dim_value`` -1 (paddle2onnx, TensorFlow exporters). ONNX Runtime
reads ``dim_value`` 0 as a fixed size of zero, and so does Tandem.

In the IR every dynamic input dim is a symbol (a ``str``): its ``dim_param`` when it has a real
name, else the anonymous name ``INPUT:AXIS`` (``"x:2"``), which is also how a user binds it by
position. One function, :func:`resolve_bindings`, turns what the user gave into a value per
symbol:

- ``dims`` -- ``--dim NAME=V`` by symbol name, or ``--dim INPUT:AXIS=V`` by position;
- ``shapes`` -- whole input shapes: ``--shapes INPUT:1x3x48x320`` (trtexec's spelling) or the
  arrays of ``--inputs IN.npz``.

A symbol bound twice must get one value; a dim the model fixes must get that value; errors
are one line naming the input, the axis, the dim and both values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from partitioner.errors import ShapeError
from partitioner.ir import Dim, Shape, Tensor

#: ``dim_value`` spellings of "dynamic" (ONNX Runtime reads any negative value so; only -1 is
#: written by exporters, other negative values stay errors: see ``partitioner.validate``)
DYNAMIC_VALUE = -1
#: ``dim_param`` spellings that name nothing: each occurrence is its own dynamic dim
ANONYMOUS_PARAMS = frozenset({"", "?"})


def anonymous_dim(input_name: str, axis: int) -> str:
    """The symbol of an unnamed dynamic dim of a graph input: ``INPUT:AXIS``."""
    return f"{input_name}:{axis}"


def dynamic_dims(inputs: Sequence[Tensor]) -> list[tuple[str, int, str]]:
    """``(input, axis, symbol)`` of every dynamic dim of ``inputs``, in order."""
    return [
        (t.name, axis, d)
        for t in inputs
        for axis, d in enumerate(t.shape or ())
        if isinstance(d, str)
    ]


def describe_dynamic(inputs: Sequence[Tensor]) -> str:
    """``input 'x' axis 0 'batch', input 'x' axis 2 'x:2'`` (one clause per dynamic dim)."""
    return ", ".join(f"input '{n}' axis {a} '{s}'" for n, a, s in dynamic_dims(inputs))


def unbound_hint(inputs: Sequence[Tensor], profiles: bool = True) -> str:
    """What to pass to bind every dynamic dim of ``inputs``: ``--dim``, ``--shapes`` (and, for
    a build, an optimisation profile)."""
    symbols = list(dict.fromkeys(s for _, _, s in dynamic_dims(inputs)))
    dims = " ".join(f"--dim {s}=N" for s in symbols)
    shapes = ",".join(
        f"{t.name}:" + "x".join(str(d) if isinstance(d, int) else "N" for d in t.shape or ())
        for t in inputs
        if any(isinstance(d, str) for d in t.shape or ())
    )
    text = f"bind them with {dims} or --shapes {shapes}"
    if profiles:
        text += ", or give an optimization profile (--min-shapes/--opt-shapes/--max-shapes)"
    return text


def resolve_bindings(
    inputs: Sequence[Tensor],
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    dims_source: str = "--dim",
    shapes_source: str = "--shapes",
) -> dict[str, int]:
    """The value of each bound symbol of ``inputs`` (whose dynamic dims are symbols).

    ``dims`` keys are symbol names or ``INPUT:AXIS``; ``shapes`` gives whole input shapes.
    ``*_source`` label the values in error messages (``--shapes``, ``in.npz``).
    Raises :class:`ShapeError` (one line) for an unknown name, a rank or fixed-dim mismatch, or
    one symbol given two values.
    """
    by_name = {t.name: t for t in inputs}
    symbols = {s for _, _, s in dynamic_dims(inputs)}
    bound: dict[str, tuple[int, str]] = {}  # symbol -> (value, where it came from)

    def bind(t: Tensor, axis: int, value: int, source: str) -> None:
        old: Dim = (t.shape or ())[axis]
        where = f"input '{t.name}' axis {axis}"
        if isinstance(old, int):
            if old != value:
                raise ShapeError(f"{where} is fixed at {old} in the model; {source} gives {value}")
            return
        if not isinstance(old, str):
            return
        if value < 0:
            raise ShapeError(f"{where} ('{old}'): {source} gives {value}; dims must be >= 0")
        first = bound.setdefault(old, (value, f"{source} ({where})"))
        if first[0] != value:
            raise ShapeError(
                f"{where} ('{old}') is {value} from {source}, but '{old}' is already "
                f"{first[0]} from {first[1]}; a dim name has one value"
            )

    for key, value in (dims or {}).items():
        source = f"{dims_source} {key}={value}"
        if key in symbols:
            for name, axis, s in dynamic_dims(inputs):
                if s == key:
                    bind(by_name[name], axis, int(value), source)
            continue
        name, sep, axis_text = key.rpartition(":")
        t = by_name.get(name) if sep and axis_text.isdigit() else None
        if t is None:
            known = ", ".join(sorted(symbols)) or "none"
            raise ShapeError(
                f"{dims_source} {key}: the model has no dynamic dim '{key}' (its dynamic dims "
                f"are: {known}; bind one by name or by position as INPUT:AXIS)"
            )
        rank = len(t.shape or ())
        if int(axis_text) >= rank:
            raise ShapeError(f"{dims_source} {key}: input '{name}' has rank {rank} ({declared(t)})")
        bind(t, int(axis_text), int(value), source)
    for name, shape in (shapes or {}).items():
        t = by_name.get(name)
        if t is None:
            raise ShapeError(
                f"{shapes_source} names input '{name}', which the model does not have; its "
                f"inputs are {', '.join(by_name) or 'none'}"
            )
        if t.shape is None:
            continue
        if len(shape) != len(t.shape):
            raise ShapeError(
                f"input '{name}' has rank {len(t.shape)} ({declared(t)}); {shapes_source} "
                f"gives {_text(shape)} (rank {len(shape)})"
            )
        for axis, value in enumerate(shape):
            bind(t, axis, int(value), shapes_source)
    return {s: v for s, (v, _) in bound.items()}


def bind_shape(shape: Shape | None, values: Mapping[str, int]) -> Shape | None:
    """``shape`` with its bound symbols replaced by their values."""
    if shape is None:
        return None
    return tuple(values.get(d, d) if isinstance(d, str) else d for d in shape)


def declared(t: Tensor) -> str:
    """Input ``t``'s shape as the model declares it: ``1x3x?x320``, ``batchx3x224x224``."""
    dims = [
        "?" if d is None or d == anonymous_dim(t.name, axis) else str(d)
        for axis, d in enumerate(t.shape or ())
    ]
    return "x".join(dims) or "scalar"


def _text(shape: Sequence[Dim] | None) -> str:
    return "x".join("?" if d is None else str(d) for d in shape or ()) or "scalar"
