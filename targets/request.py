"""``BuildRequest``: everything one build needs, as typed values.

Every front end -- ``tandem build/run/compare/inspect``, ``tandem exec`` and the Python
``Builder`` -- decodes its own arguments into one of these and hands it to
``targets.build.build``; a new build rule is then written once, there.

Plugins are not part of a request: they are process-wide registrations (the CLI's ``--plugin``
loads them before any command runs, the API registers on ``tandem.get_plugin_registry()``),
needed to run a plan as much as to build one; the build records which of them a plan needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from devices.calibration import Calibration
from devices.hardware import TargetSpec
from gpu_kernels.timing_cache import TimingCache
from partitioner.ir import Graph
from partitioner.policy import Policy
from partitioner.profiles import OptimizationProfile


@dataclass(frozen=True)
class BuildRequest:
    #: the ONNX file; with ``graph`` given, only the name the plan records
    model: str
    #: the board, at its power mode
    target: TargetSpec
    #: the device policy, with the front end's overrides applied; its ``precision`` is the
    #: build's default precision
    policy: Policy
    #: an already imported graph (the Python API's network, or a model a front end has read
    #: to decide its profiles); imported from ``model`` otherwise
    graph: Graph | None = None
    #: dynamic input dims bound at import, by name or ``INPUT:AXIS`` (``--dim batch=1``)
    fixed_dims: Mapping[str, int] = field(default_factory=dict)
    #: whole input shapes binding dynamic dims at import (``--shapes x:1x3x48x320``)
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    #: optimisation profiles for dynamic shapes; calibration runs at profile 0's opt shapes
    profiles: tuple[OptimizationProfile, ...] = ()
    calibration: Calibration = field(default_factory=Calibration)
    #: measured GPU tactic times: they pick the tactics they know, and travel in the plan
    timing_cache: TimingCache | None = None
    #: cross-compile the GPU kernels into the plan; off (``--no-cubins``): the board compiles
    #: them with NVRTC when the plan loads
    cubins: bool = True
    #: graph inputs/outputs bound in a DLA-native layout (``tandem exec --inputIOFormats``):
    #: their GPU<->DLA boundary is priced without a reformat kernel
    native_io: frozenset[str] = frozenset()
