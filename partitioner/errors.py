"""The one exception hierarchy of Tandem.

Every error a user can cause derives from :class:`TandemError`; the CLI prints its message (one
line: what went wrong, then what to do) and exits 1. :class:`InternalError` marks our own bugs.
It lives at the bottom of the layering so that every package can raise it.
"""

from __future__ import annotations


class TandemError(Exception):
    """An error the user can act on. ``str(err)`` is the whole message."""

    exit_code = 1


class InternalError(TandemError):
    """A bug in Tandem itself (an invariant broke), never the user's input."""


class ModelError(TandemError):
    """The model file cannot be read or is not a valid model."""


class UnsupportedOpError(ModelError):
    """The model uses operators that Tandem does not implement."""


class GraphError(TandemError):
    """The graph is malformed: a cycle, a dangling tensor, a name clash."""


class ShapeError(TandemError):
    """Shapes or dtypes do not fit what a layer or an input binding expects."""


class InputError(TandemError):
    """User-supplied input data (an ``.npz`` file, a feed) does not match the model."""


class ConfigError(TandemError):
    """A YAML file (policy, target, inventory) is invalid."""


class ExecutionError(TandemError):
    """A layer failed while running; the message names the layer and its op."""
