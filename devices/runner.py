"""One runner interface for every executor (CPU reference, CUDA, DLA emulator, remote board).

Modelled on Polygraphy's ``BaseRunner``: the base class owns the activation state, the context
manager, feed validation and timing; a backend overrides only

* ``activate_impl()``   -- allocate / compile / load (called once by ``activate``),
* ``infer_impl(feeds)`` -- run one inference on validated feeds, return outputs by name,
* ``deactivate_impl()`` -- release what ``activate_impl`` took (optional).

Usage::

    with CpuRunner(graph) as runner:
        outputs = runner.infer({"input": x})

Feeds are checked against ``input_metadata()`` (by default the graph's inputs): a missing or an
unexpected name, a wrong dtype, rank or dimension raises :class:`~partitioner.errors.InputError`
naming the input, what was received and what was expected. Symbolic dimensions (``"batch"``)
accept any size but must agree across every input that uses the same symbol.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType

import numpy as np

from partitioner.errors import ExecutionError, InputError
from partitioner.ir import Graph, Shape


class BaseRunner:
    """Base of every backend runner. Subclasses implement the three ``*_impl`` hooks."""

    def __init__(self, graph: Graph | None = None, name: str | None = None) -> None:
        self.graph = graph
        self.name = name or type(self).__name__
        self.is_active = False
        #: wall-clock seconds of the last ``infer_impl`` call
        self.last_inference_time: float | None = None
        #: intermediate tensors the last run exposed, by name (a runner asked to capture them)
        self.captured: dict[str, np.ndarray] = {}

    # ----- hooks for subclasses --------------------------------------------------------------
    def activate_impl(self) -> None:
        """Prepare the backend (compile, allocate, load weights)."""

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference. ``feeds`` are already validated."""
        raise NotImplementedError(f"{type(self).__name__} does not implement infer_impl")

    def deactivate_impl(self) -> None:
        """Release what ``activate_impl`` took."""

    def input_metadata(self) -> dict[str, tuple[str | None, Shape | None]]:
        """Expected ``{name: (dtype, shape)}`` of every input; from the graph by default."""
        if self.graph is None:
            return {}
        return {t.name: (t.dtype, t.shape) for t in self.graph.inputs}

    # ----- lifecycle -------------------------------------------------------------------------
    def activate(self) -> None:
        """Activate once; activating an active runner is a no-op."""
        if self.is_active:
            return
        self.activate_impl()
        self.is_active = True

    def deactivate(self) -> None:
        """Deactivate; idempotent."""
        if not self.is_active:
            return
        try:
            self.deactivate_impl()
        finally:
            self.is_active = False

    def __enter__(self) -> BaseRunner:
        self.activate()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.deactivate()

    # ----- inference -------------------------------------------------------------------------
    def infer(
        self, feeds: Mapping[str, np.ndarray], check_inputs: bool = True
    ) -> dict[str, np.ndarray]:
        """Validate ``feeds`` (unless told not to), run, and return outputs by name."""
        if not self.is_active:
            raise ExecutionError(
                f"runner '{self.name}' is not active: use it as a context manager "
                "(`with runner:`) or call activate() first"
            )
        arrays = {name: np.asarray(value) for name, value in feeds.items()}
        if check_inputs:
            self.validate_feeds(arrays)
        start = time.perf_counter()
        outputs = self.infer_impl(arrays)
        self.last_inference_time = time.perf_counter() - start
        return outputs

    def validate_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`InputError` unless ``feeds`` match ``input_metadata()`` exactly."""
        expected = self.input_metadata()
        missing = [name for name in expected if name not in feeds]
        if missing:
            listed = ", ".join(f"'{n}' {_describe(*expected[n])}" for n in missing)
            raise InputError(f"missing input {listed}; the model's inputs are {list(expected)}")
        extra = [name for name in feeds if name not in expected]
        if extra:
            raise InputError(
                f"unexpected input {', '.join(repr(n) for n in extra)}; "
                f"the model's inputs are {list(expected)}"
            )
        bound: dict[str, tuple[int, str]] = {}  # symbol -> (size, input that fixed it)
        for name, (dtype, shape) in expected.items():
            value = feeds[name]
            got = _describe(str(value.dtype), value.shape)
            if dtype is not None and str(value.dtype) != dtype:
                raise InputError(f"input '{name}': got {got}, expected {_describe(dtype, shape)}")
            if shape is None:
                continue
            if value.ndim != len(shape):
                raise InputError(
                    f"input '{name}': got {got} (rank {value.ndim}), "
                    f"expected {_describe(dtype, shape)} (rank {len(shape)})"
                )
            for axis, (want, have) in enumerate(zip(shape, value.shape)):
                if isinstance(want, int) and want != have:
                    raise InputError(
                        f"input '{name}': got {got}, expected {_describe(dtype, shape)} "
                        f"(dimension {axis} must be {want})"
                    )
                if isinstance(want, str):
                    size, owner = bound.setdefault(want, (int(have), name))
                    if size != have:
                        raise InputError(
                            f"input '{name}': got {got}, but symbolic dimension '{want}' is "
                            f"already {size} from input '{owner}'"
                        )

    def __repr__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"{type(self).__name__}({self.name!r}, {state})"


def _describe(dtype: str | None, shape: Shape | tuple[int, ...] | None) -> str:
    dims = "?" if shape is None else "(" + ", ".join(str(d) for d in shape) + (
        ",)" if len(shape) == 1 else ")"
    )
    return f"{dims} {dtype or '?'}"
