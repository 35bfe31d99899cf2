"""What the partitioner asks a device: can you run this layer, and how long would it take?

The partitioner knows no hardware. ``devices/`` implements :class:`DeviceCapability` for each
device kind from its support table and cost model, in the manner of torch.fx's
``OperatorSupport``, except that every verdict carries the reason a user reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from partitioner.ir import Graph, Node

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Verdict:
    """Whether a device can run a layer; ``reason`` says why not (or how, when ok)."""

    ok: bool
    reason: str = ""

    @staticmethod
    def yes(reason: str = "") -> Verdict:
        return Verdict(True, reason)

    @staticmethod
    def no(reason: str) -> Verdict:
        return Verdict(False, reason)

    def __bool__(self) -> bool:
        return self.ok


class DeviceCapability(Protocol):
    """One device kind as the partitioner sees it (``gpu``, ``dla``, ``cpu``)."""

    @property
    def kind(self) -> str:
        """``"gpu"``, ``"dla"`` or ``"cpu"``."""
        ...

    def supports(self, node: Node, graph: Graph, precision: Precision) -> Verdict:
        """Can this device run ``node`` at ``precision``? The reason names the limit."""
        ...

    def cost(self, node: Node, graph: Graph, precision: Precision) -> float:
        """Predicted seconds for ``node`` on this device (the device must support it)."""
        ...


class SharesMemory(Protocol):
    """Optional: a capability that also says how much this device slows down while others run
    (``slowdown(device, {other device: fraction of the time it runs}) -> factor >= 1``). The
    throughput objective's pipelined period uses it; a capability without it adds none."""

    def slowdown(self, device: str, others: Mapping[str, float]) -> float: ...


class HoldsLoadables(Protocol):
    """Optional, for a DLA: how many loadables one core holds at once (its support table's
    figure). A policy's ``max_dla_subgraphs`` overrides it; without either, no limit applies."""

    @property
    def max_loadables(self) -> int | None: ...


class DrawsPower(Protocol):
    """Optional: a capability that knows the power its device draws while busy (watts, None
    where unknown); predictions then carry joules per inference and ``objective: energy``
    can be met."""

    def watts(self, device: str) -> float | None: ...
