"""Optimisation profiles: the range of shapes each dynamic input may take (TensorRT's concept).

A profile gives, per input, three shapes ``min <= opt <= max`` (dimension by dimension). A plan
may carry several; at run time the input shapes must fall inside one of them. The builder uses
profiles for two decisions:

- a dimension whose ``min == max`` in every profile is *fixed* to that value before placement,
  so layers touching it keep static shapes and stay eligible for the DLA (static shapes only);
- every other symbolic dimension stays symbolic: layers whose tensors carry it go to the GPU,
  and the capability report says why (``dynamic shape ... needs static shapes``).

The ``opt`` shape is what cost predictions and calibration use, as in TensorRT.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from partitioner.errors import InputError, ShapeError
from partitioner.ir import Tensor

Dims = tuple[int, ...]


def dims_text(shape: Sequence[Any]) -> str:
    """``1x3x224x224`` (trtexec's spelling); symbolic dims print by name."""
    return "x".join(str(d) for d in shape) or "scalar"


@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max of one input."""

    min: Dims
    opt: Dims
    max: Dims

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max)
        )

    def describe(self) -> str:
        if self.min == self.max:
            return dims_text(self.min)
        return f"{dims_text(self.min)} .. {dims_text(self.max)} (opt {dims_text(self.opt)})"


@dataclass
class OptimizationProfile:
    """Shape ranges per input name; mutable like TensorRT's ``IOptimizationProfile``."""

    shapes: dict[str, ShapeRange] = field(default_factory=dict)

    def set_shape(
        self, name: str, min: Sequence[int], opt: Sequence[int], max: Sequence[int]
    ) -> None:
        """Set the range of input ``name``; checks ``min <= opt <= max`` per dimension."""
        lo, mid, hi = (_dims(name, which, s) for which, s in (("min", min), ("opt", opt),
                                                               ("max", max)))
        if not len(lo) == len(mid) == len(hi):
            raise ShapeError(
                f"profile for input '{name}': min {dims_text(lo)}, opt {dims_text(mid)} and "
                f"max {dims_text(hi)} must have the same rank"
            )
        for axis, (a, b, c) in enumerate(zip(lo, mid, hi)):
            if not a <= b <= c:
                raise ShapeError(
                    f"profile for input '{name}': dimension {axis} needs min <= opt <= max, "
                    f"got {a}, {b}, {c} (min {dims_text(lo)}, opt {dims_text(mid)}, "
                    f"max {dims_text(hi)})"
                )
        self.shapes[name] = ShapeRange(lo, mid, hi)

    def get_shape(self, name: str) -> tuple[Dims, Dims, Dims]:
        r = self.shapes.get(name)
        if r is None:
            raise ShapeError(f"the profile has no shapes for input '{name}'")
        return r.min, r.opt, r.max

    # ----- checks against a model ----------------------------------------------------------
    def validate(self, inputs: Sequence[Tensor], index: int = 0) -> None:
        """Names exist, ranks match, static dims agree, every dynamic input is covered."""
        by_name = {t.name: t for t in inputs}
        label = f"optimization profile {index}"
        for name, r in self.shapes.items():
            t = by_name.get(name)
            if t is None:
                raise ShapeError(
                    f"{label} names input '{name}', which the model does not have; its inputs "
                    f"are {', '.join(by_name) or 'none'}"
                )
            if t.shape is None:
                continue
            if len(t.shape) != len(r.min):
                raise ShapeError(
                    f"{label}: input '{name}' has rank {len(t.shape)} "
                    f"({dims_text(_show(t.shape))}) but the profile gives rank {len(r.min)} "
                    f"({dims_text(r.min)})"
                )
            for axis, d in enumerate(t.shape):
                if isinstance(d, int) and not r.min[axis] == r.max[axis] == d:
                    raise ShapeError(
                        f"{label}: input '{name}' dimension {axis} is fixed at {d} in the model "
                        f"but the profile allows {r.min[axis]}..{r.max[axis]}"
                    )
        for t in inputs:
            if t.name not in self.shapes and not t.is_static:
                raise ShapeError(
                    f"{label} gives no shapes for input '{t.name}' "
                    f"({dims_text(_show(t.shape or ()))}), which has dynamic dimensions; "
                    "every dynamic input needs min/opt/max in every profile"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            name: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)}
            for name, r in self.shapes.items()
        }


def _dims(name: str, which: str, shape: Sequence[int]) -> Dims:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"profile for input '{name}': {which} shape {shape!r} is not a list of "
                         "integers") from None
    if any(d < 0 for d in dims) or any(isinstance(d, bool) for d in shape):
        raise ShapeError(f"profile for input '{name}': {which} shape {dims_text(dims)} has a "
                         "negative dimension")
    return dims


def _show(shape: Sequence[Any]) -> list[Any]:
    return ["?" if d is None else d for d in shape]


# ----- what the builder and the runtime ask ---------------------------------------------------
def validate_profiles(profiles: Sequence[OptimizationProfile], inputs: Sequence[Tensor]) -> None:
    for i, p in enumerate(profiles):
        p.validate(inputs, i)


def fixed_dims(
    profiles: Sequence[OptimizationProfile], inputs: Sequence[Tensor]
) -> dict[str, int]:
    """Symbolic dims that every profile pins to one value (``min == max``), by symbol name.

    A symbol is fixed only when all its occurrences, in every input and every profile, agree
    on a single value; the DLA can then run the layers that carry it.
    """
    if not profiles:
        return {}
    seen: dict[str, set[int]] = {}
    ranged: set[str] = set()
    for t in inputs:
        for axis, d in enumerate(t.shape or ()):
            if not isinstance(d, str):
                continue
            for p in profiles:
                r = p.shapes.get(t.name)
                if r is None or axis >= len(r.min):
                    ranged.add(d)
                elif r.min[axis] == r.max[axis]:
                    seen.setdefault(d, set()).add(r.min[axis])
                else:
                    ranged.add(d)
    return {s: next(iter(v)) for s, v in seen.items() if len(v) == 1 and s not in ranged}


def opt_dims(profile: OptimizationProfile, inputs: Sequence[Tensor]) -> dict[str, int]:
    """Each symbolic dim's value at the profile's ``opt`` shapes (for costs and calibration)."""
    out: dict[str, int] = {}
    for t in inputs:
        r = profile.shapes.get(t.name)
        if r is None:
            continue
        for axis, d in enumerate(t.shape or ()):
            if isinstance(d, str) and axis < len(r.opt):
                out.setdefault(d, r.opt[axis])
    return out


def check_shape(
    profiles: Sequence[OptimizationProfile],
    feeds: Mapping[str, Any],
    active: int | None = None,
) -> int | None:
    """The index of the first profile whose ranges hold every fed shape (None without profiles);
    with ``active``, only that profile is considered (an execution context's chosen one).

    Raises :class:`InputError` naming the input, its shape and the allowed range(s) otherwise.
    """
    if not profiles:
        return None
    if active is not None and not 0 <= active < len(profiles):
        raise InputError(f"optimization profile {active} does not exist; the plan has "
                         f"{len(profiles)} (0..{len(profiles) - 1})")
    candidates = [active] if active is not None else list(range(len(profiles)))
    shapes = {name: tuple(int(d) for d in np.shape(v)) for name, v in feeds.items()}
    first_miss: tuple[str, Dims] | None = None
    for index in candidates:
        miss = _first_outside(profiles[index], shapes)
        if miss is None:
            return index
        first_miss = first_miss or miss
    assert first_miss is not None
    name, shape = first_miss
    ranges = [
        f"profile {i}: {profiles[i].shapes[name].describe()}" for i in candidates
        if name in profiles[i].shapes
    ]
    which = f"active optimization profile {active}" if active is not None else (
        "every optimization profile")
    raise InputError(
        f"input '{name}' has shape {dims_text(shape)}, outside {which} "
        f"({'; '.join(ranges)}); feed a shape inside a profile or rebuild with a wider one"
    )


def _first_outside(p: OptimizationProfile, shapes: Mapping[str, Dims]) -> tuple[str, Dims] | None:
    for name, r in p.shapes.items():
        shape = shapes.get(name)
        if shape is not None and not r.contains(shape):
            return name, shape
    return None


def profiles_to_data(profiles: Iterable[OptimizationProfile]) -> list[dict[str, Any]]:
    """The plan header's ``profiles`` list."""
    return [{"inputs": p.to_dict()} for p in profiles]


def parse_shape_list(text: str, flag: str = "--shapes") -> dict[str, Dims]:
    """trtexec's ``name:1x3x224x224,other:1x10`` -> ``{name: (1, 3, 224, 224), ...}``.

    Names may contain ``:``; the last one separates the name from the dims.
    """
    out: dict[str, Dims] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, dims = item.rpartition(":")
        name = name.strip("'\"")
        try:
            shape = tuple(int(d) for d in dims.split("x")) if dims else ()
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(d < 0 for d in shape):
            raise InputError(
                f"{flag}={text}: expected NAME:DIMS[,NAME:DIMS...], e.g. input:1x3x224x224; "
                f"cannot read '{item}'"
            )
        out[name] = shape
    return out
