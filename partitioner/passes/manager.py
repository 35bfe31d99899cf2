"""Run passes to a fixed point, optionally linting the graph after each one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from partitioner.errors import InternalError, TandemError
from partitioner.ir import Graph

Pass = Callable[[Graph], bool]


def run_passes(
    graph: Graph,
    passes: Sequence[Pass],
    *,
    lint: bool = False,
    max_iterations: int = 16,
) -> bool:
    """Apply ``passes`` in order, repeatedly, until none changes the graph.

    Returns True if any pass changed the graph. ``lint=True`` runs ``graph.lint()`` after each
    pass and names the pass that broke the graph. Stops after ``max_iterations`` rounds, since a
    pair of passes that undo each other would otherwise loop forever.
    """
    changed_any = False
    for _ in range(max_iterations):
        changed = False
        for p in passes:
            changed_now = bool(p(graph))
            changed = changed or changed_now
            if lint:
                try:
                    graph.lint()
                except TandemError as err:
                    name = getattr(p, "__name__", None) or getattr(
                        getattr(p, "func", None), "__name__", repr(p)
                    )
                    raise InternalError(f"pass '{name}' left a malformed graph: {err}") from err
        changed_any = changed_any or changed
        if not changed:
            break
    return changed_any
