"""Wiring used by the CLI: model loading with the project's passes (``targets.build``)."""

from __future__ import annotations

from targets.build import load_model as load_graph

__all__ = ["load_graph"]
