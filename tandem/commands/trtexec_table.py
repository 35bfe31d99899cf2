"""The trtexec flag table: every flag of trtexec 10.3 (JetPack 6) and 11.x (JetPack 7.2), what
``tandem exec`` does with it (implemented, a no-op with its note, refused with the reason) and in
which trtexec it exists. The parsing and the rules around it are ``trtexec_flags``.

Sources (the flag lists are each version's ``--help``; the parse rules its option parser):
- trtexec 10.3: NVIDIA/TensorRT tag v10.3.0, samples/common/sampleOptions.cpp (``*Options::help``
  and ``*Options::parse``); https://github.com/NVIDIA/TensorRT/blob/v10.3.0/samples/common/sampleOptions.cpp
- trtexec 11: NVIDIA/TensorRT tag v11.1 (the newest 11.x source published; JetPack 7.2 ships
  11.4, whose trtexec reference page lists the same precision-flag removal):
  https://github.com/NVIDIA/TensorRT/blob/v11.1/samples/common/sampleOptions.cpp and
  https://docs.nvidia.com/deeplearning/tensorrt/11.4.0/inference-library/dla-build-and-run.html
  ("TensorRT 11.x removed the per-precision trtexec flags, so FP16 comes from the network tensor
  types rather than from --fp16"). trtexec 11 warns and ignores ``--useSpinWait``,
  ``--useCudaGraph``, ``--separateProfileRun``, ``--noDataTransfers`` and ``--stronglyTyped``
  (its InferenceOptions::parse); ``--fp16``/``--int8``/``--best``/``--calib`` are unknown options.
- I/O formats and their type/rank rules: NvInferRuntimeBase.h ``enum class TensorFormat``
  (v10.3.0); the DLA standalone format restriction: BuildOptions/AllOptions::parse
  ("I/O formats for safe DLA capability are restricted to fp16/int8:dla_linear, fp16/int8:hwc4,
  fp16:chw16 or int8:chw32").
- Flags older scripts still pass (``--workspace``, ``--buildOnly``, ``--nvtxMode``,
  ``--explicitBatch``, ``--streams``): TensorRT CHANGELOG 21.10 / 8.x and the 8.x -> 10.x trtexec
  migration page https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-8x-to-10x-trtexec.html

``docs/trtexec.md`` is ``trtexec_flags.markdown_table`` (``tandem exec --help-table``); a test
keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

IMPLEMENTED, NO_OP, REFUSED = "implemented", "no-op", "refused"
GENERATIONS = (10, 11)  # trtexec 10.3 (JetPack 6) and 11.x (JetPack 7.2)


@dataclass(frozen=True)
class Flag:
    """One trtexec flag: its value kind, what Tandem does with it, and in which trtexec it is.

    ``status``/``note`` hold for every generation in ``versions``; ``v11`` overrides them for
    trtexec 11. ``versions == ()``: a flag of trtexec 8.x that older scripts still pass, which
    trtexec 10 itself no longer parses (the note says what Tandem does with it anyway).
    """

    name: str
    value: bool
    status: str
    note: str
    versions: tuple[int, ...] = GENERATIONS
    v11: tuple[str, str] | None = None
    tandem: bool = False  # Tandem's own flag, no trtexec counterpart

    def rule(self, generation: int) -> tuple[str, str]:
        if generation == 11 and self.v11 is not None:
            return self.v11
        return self.status, self.note


def _f(name: str, value: bool, status: str, note: str, **kw: object) -> Flag:
    return Flag(name, value, status, note, **kw)  # type: ignore[arg-type]


_ONLY10 = {"versions": (10,)}
_ONLY11 = {"versions": (11,)}
_LEGACY: dict[str, object] = {"versions": ()}
_COMPARE = "accuracy checks are `tandem compare MODEL --target ...` (ONNX Runtime is the oracle)"
_PLUGINS = "Tandem plugins are Python modules: pass `tandem --plugin MODULE exec ...`"
_TUNE = "trtexec 11's build-route tuner is not implemented (Tandem's builder has no knob database)"
_TYPED11 = (
    "removed in trtexec 11 (networks are strongly typed): precision comes from the model's "
    "tensor types: FP16 by casts in the model, INT8 by Q/DQ nodes"
)

FLAG_LIST: tuple[Flag, ...] = (
    # ----- model
    _f("onnx", True, IMPLEMENTED, "ONNX model to build"),
    # ----- build
    _f("minShapes", True, IMPLEMENTED, "profile min shapes name:1x3x224x224,..."),
    _f("optShapes", True, IMPLEMENTED, "profile opt shapes (costs and calibration use them)"),
    _f("maxShapes", True, IMPLEMENTED, "profile max shapes"),
    _f(
        "minShapesCalib",
        True,
        REFUSED,
        "calibration runs at the build profile's opt shapes; a "
        "separate calibration profile is not implemented",
        **_ONLY10,
    ),
    _f("optShapesCalib", True, REFUSED, "see --minShapesCalib", **_ONLY10),
    _f("maxShapesCalib", True, REFUSED, "see --minShapesCalib", **_ONLY10),
    _f(
        "inputIOFormats",
        True,
        IMPLEMENTED,
        "type:format per input (chw, chw16, chw32, dla_linear, "
        "dla_hwc4, ...), checked against each input's rank/dtype; a DLA-native format on an input "
        "the DLA reads drops the GPU reformat kernel from that boundary's predicted cost; recorded "
        "in the plan (the binding's dtype/layout here stays the model's)",
    ),
    _f("outputIOFormats", True, IMPLEMENTED, "as --inputIOFormats, for outputs"),
    _f(
        "memPoolSize",
        True,
        IMPLEMENTED,
        "pool:size,... (workspace, dlaSRAM, dlaLocalDRAM, "
        "dlaGlobalDRAM, tacticSharedMem; B/K/M/G suffixes, MiB default) validated and recorded in "
        "the plan; dlaSRAM is rounded down to a power of 2 and checked against the target's DLA "
        "SRAM; the DLA latency model does not model pool capacities, so placement is unchanged",
    ),
    _f(
        "profilingVerbosity",
        True,
        IMPLEMENTED,
        "layer_names_only|detailed|none: what "
        "--dumpLayerInfo / --exportLayerInfo show (none: layer indices only)",
    ),
    _f(
        "avgTiming",
        True,
        NO_OP,
        "GPU tactics are picked by the cost model or the timing cache; there is no averaging count",
    ),
    _f("refit", False, NO_OP, "every plan is refittable: `tandem refit PLAN --weights NEW.onnx`"),
    _f("stripWeights", False, REFUSED, "plans always carry their weights"),
    _f("stripAllWeights", False, REFUSED, "plans always carry their weights"),
    _f(
        "weightless",
        False,
        REFUSED,
        "plans always carry their weights (trtexec: deprecated alias of --stripWeights)",
        **_ONLY10,
    ),
    _f(
        "versionCompatible",
        False,
        NO_OP,
        "plans of one Tandem major version read each other (the header's tandem_version)",
    ),
    _f("vc", False, NO_OP, "alias of --versionCompatible"),
    _f(
        "pluginInstanceNorm",
        False,
        NO_OP,
        "InstanceNormalization is imported natively; there is no plugin implementation to choose",
    ),
    _f("pi", False, NO_OP, "alias of --pluginInstanceNorm"),
    _f(
        "uint8AsymmetricQuantizationDLA",
        False,
        REFUSED,
        "UINT8 / asymmetric quantization is not modelled for the DLA",
        **_ONLY11,
    ),
    _f(
        "reportCapabilityDLA",
        False,
        REFUSED,
        "use `tandem inspect MODEL --target ...`: every layer's device with the reason",
        **_ONLY11,
    ),
    _f(
        "adjustForDLA",
        False,
        REFUSED,
        "the parser rewrites for the DLA are not implemented",
        **_ONLY11,
    ),
    _f("enablePluginOverride", False, REFUSED, _PLUGINS, **_ONLY11),
    _f(
        "useRuntime",
        True,
        IMPLEMENTED,
        "only `full` (no-op); lean/dispatch runtimes do not exist here",
    ),
    _f("leanDLLPath", True, REFUSED, "no lean runtime"),
    _f("excludeLeanRuntime", False, REFUSED, "no lean runtime"),
    _f("monitorMemory", False, REFUSED, "safety-build memory monitor not implemented", **_ONLY11),
    _f("sparsity", True, IMPLEMENTED, "only `disable` (no-op); there are no sparse tactics"),
    _f("noTF32", False, NO_OP, "FP32 GPU layers compute in FP32 here (no TF32 tactics)"),
    _f("fp16", False, IMPLEMENTED, "allow FP16 layers", v11=(REFUSED, _TYPED11)),
    _f(
        "int8",
        False,
        IMPLEMENTED,
        "allow INT8 layers (calibrated, or the model's Q/DQ scales)",
        v11=(REFUSED, _TYPED11 + "; a Q/DQ model builds INT8 without the flag"),
    ),
    _f("best", False, IMPLEMENTED, "INT8 with FP16/FP32 fallback", v11=(REFUSED, _TYPED11)),
    _f("bf16", False, REFUSED, "no BF16 kernels (GPU) and no BF16 on the DLA", **_ONLY10),
    _f("fp8", False, REFUSED, "no FP8 kernels; Orin has no FP8", **_ONLY10),
    _f("int4", False, REFUSED, "no INT4 weight-only kernels", **_ONLY10),
    _f(
        "stronglyTyped",
        False,
        IMPLEMENTED,
        "precision from the model's tensor types (Q/DQ -> "
        "INT8, FP16 tensors -> FP16, else FP32); precision flags are ignored with a warning, as "
        "trtexec does",
        v11=(NO_OP, "trtexec 11: networks are always strongly typed"),
    ),
    _f("directIO", False, NO_OP, "boundary reformats follow --inputIOFormats/--outputIOFormats"),
    _f(
        "precisionConstraints",
        True,
        IMPLEMENTED,
        "none|prefer|obey (layer precisions are always obeyed)",
        **_ONLY10,
    ),
    _f(
        "layerPrecisions",
        True,
        IMPLEMENTED,
        "per-layer precision name:fp16,... (* wildcards)",
        **_ONLY10,
    ),
    _f("layerOutputTypes", True, REFUSED, "a layer's output type follows its precision", **_ONLY10),
    _f("layerDeviceTypes", True, IMPLEMENTED, "per-layer device name:GPU|DLA,..."),
    _f(
        "decomposableAttentions",
        True,
        REFUSED,
        "attention decomposition is not implemented",
        **_ONLY11,
    ),
    _f(
        "calib",
        True,
        IMPLEMENTED,
        "INT8 calibration: a cache file (TensorRT text format), a folder of .npz, or a folder "
        "of .jpg/.png images (see --calibPreprocess)",
        versions=(10,),
    ),
    _f("safe", False, REFUSED, "safety-certified engines are out of scope"),
    _f("consistency", False, REFUSED, "safety-certified engines are out of scope"),
    _f("restricted", False, REFUSED, "safety scope checking is out of scope", **_ONLY10),
    _f("dumpKernelText", False, REFUSED, "safety-only", **_ONLY11),
    _f(
        "buildDLAStandalone",
        False,
        IMPLEMENTED,
        "DLA-only plan (no GPU layer; the first layer "
        "the DLA cannot run is named); needs --useDLACore and DLA I/O formats, refuses "
        "--allowGPUFallback, implies --skipInference (as trtexec)",
    ),
    _f("allowGPUFallback", False, IMPLEMENTED, "layers the DLA cannot run go to the GPU"),
    _f("saveEngine", True, IMPLEMENTED, "write the built plan here"),
    _f("loadEngine", True, IMPLEMENTED, "run this plan instead of building"),
    _f("asyncFileReader", False, NO_OP, "plans are memory-mapped", **_ONLY11),
    _f(
        "getPlanVersionOnly",
        False,
        IMPLEMENTED,
        "print the Tandem version that wrote --loadEngine's plan and exit",
    ),
    _f("tacticSources", True, NO_OP, "GPU kernels are Tandem's own (no cuBLAS/cuDNN tactics)"),
    _f("noBuilderCache", False, NO_OP, "there is no builder cache besides --timingCacheFile"),
    _f("noCompilationCache", False, NO_OP, "there is no compilation cache to disable"),
    _f("errorOnTimingCacheMiss", False, REFUSED, "a timing cache miss is priced by the cost model"),
    _f(
        "timingCacheFile",
        True,
        IMPLEMENTED,
        "tactic timing cache (picks tactics at build; read and updated by CUDA GPU segments)",
    ),
    _f("preview", True, NO_OP, "TensorRT preview features do not apply"),
    _f("builderOptimizationLevel", True, NO_OP, "the builder has one level"),
    _f("maxTactics", True, NO_OP, "the builder has one level", **_ONLY11),
    _f(
        "hardwareCompatibilityLevel",
        True,
        IMPLEMENTED,
        "only `none` (no-op): a plan's kernels are built for --target's GPU",
    ),
    _f(
        "runtimePlatform",
        True,
        IMPLEMENTED,
        "only `SameAsBuild` (no-op); cross-platform plans are what --target already builds",
    ),
    _f("tempdir", True, NO_OP, "no temporary executables are written"),
    _f("tempfileControls", True, NO_OP, "no temporary executables are written"),
    _f("maxAuxStreams", True, NO_OP, "no auxiliary streams: segments run in plan order"),
    _f("profile", True, REFUSED, "one optimization profile per exec build"),
    _f("calibProfile", True, REFUSED, "calibration uses profile 0", **_ONLY10),
    _f("allowWeightStreaming", False, REFUSED, "weight streaming is not implemented"),
    _f("markDebug", True, REFUSED, _COMPARE),
    _f("markUnfusedTensorsAsDebugTensors", False, REFUSED, _COMPARE, **_ONLY11),
    _f("tilingOptimizationLevel", True, NO_OP, "no L2 tiling pass", **_ONLY11),
    _f("l2LimitForTiling", True, NO_OP, "no L2 tiling pass", **_ONLY11),
    _f("remoteAutoTuningConfig", True, REFUSED, "safety-only", **_ONLY11),
    _f("refitFromOnnx", True, REFUSED, "use `tandem refit PLAN --weights NEW.onnx`", **_ONLY11),
    _f("cpuOnly", False, NO_OP, "builds never need a GPU here", **_ONLY11),
    # ----- system
    _f("device", True, IMPLEMENTED, "only 0 (no-op): runs use this machine's first GPU"),
    _f("useDLACore", True, IMPLEMENTED, "DLA core N becomes the default device"),
    _f("staticPlugins", True, REFUSED, _PLUGINS),
    _f("dynamicPlugins", True, REFUSED, _PLUGINS),
    _f("setPluginsToSerialize", True, REFUSED, _PLUGINS),
    _f("ignoreParsedPluginLibs", False, REFUSED, _PLUGINS),
    _f("safetyPlugins", True, REFUSED, _PLUGINS, **_ONLY11),
    # ----- inference
    _f("shapes", True, IMPLEMENTED, "inference shapes (and the profile when building)"),
    _f(
        "loadInputs",
        True,
        IMPLEMENTED,
        "name:file.bin,...: raw data of the input's dtype and shape (numpy tofile), instead of "
        "random values",
    ),
    _f("loadRefOutputs", True, REFUSED, _COMPARE, **_ONLY11),
    _f("iterations", True, IMPLEMENTED, "run at least N inferences (default 10)"),
    _f("warmUp", True, IMPLEMENTED, "warm up for N ms (default 200)"),
    _f("duration", True, IMPLEMENTED, "run at least N seconds (default 3)"),
    _f(
        "sleepTime", True, IMPLEMENTED, "a gap of N ms between launch and compute of each inference"
    ),
    _f("idleTime", True, IMPLEMENTED, "sleep N ms between inferences"),
    _f(
        "infStreams",
        True,
        REFUSED,
        "one execution context per run; concurrent engines are `tandem plan-group`",
    ),
    _f("exposeDMA", False, NO_OP, "copies and compute are already serialised here"),
    _f(
        "noDataTransfers",
        False,
        IMPLEMENTED,
        "leave host<->device copies out of the timings",
        v11=(NO_OP, "trtexec 11 leaves copies out by default (--includeDataTransfers adds them)"),
    ),
    _f("includeDataTransfers", False, IMPLEMENTED, "time host<->device copies", **_ONLY11),
    _f("useManagedMemory", False, NO_OP, "buffers are host numpy arrays / CUDA allocations"),
    _f(
        "useSpinWait",
        False,
        NO_OP,
        "each inference is timed on the host around a synchronous "
        "call; there is no event wait to spin on",
        v11=(NO_OP, "trtexec 11: spin wait is the default"),
    ),
    _f("noSpinWait", False, NO_OP, "see --useSpinWait", **_ONLY11),
    _f("threads", False, NO_OP, "one inference thread"),
    _f(
        "useCudaGraph",
        False,
        NO_OP,
        "the CUDA backend always replays CUDA graphs",
        v11=(NO_OP, "trtexec 11: CUDA graphs are the default"),
    ),
    _f("noCudaGraph", False, NO_OP, "the CUDA backend always replays CUDA graphs", **_ONLY11),
    _f("timeDeserialize", False, REFUSED, "deserialisation time is not reported"),
    _f("timeRefit", False, REFUSED, "use `tandem refit` (it prints its time)"),
    _f(
        "separateProfileRun",
        False,
        NO_OP,
        "the timed runs never carry a per-layer profiler: "
        "per-layer times are split from segment times",
        v11=(NO_OP, "trtexec 11: always a separate profile run"),
    ),
    _f("skipInference", False, IMPLEMENTED, "build and --saveEngine only, no inference"),
    _f("persistentCacheRatio", True, NO_OP, "no L2 persistence control"),
    _f("useProfile", True, IMPLEMENTED, "only 0 (plans built here have one profile)"),
    _f("allocationStrategy", True, NO_OP, "there is no allocation strategy to choose"),
    _f("accuracyAlgorithm", True, REFUSED, _COMPARE, **_ONLY11),
    _f("atol", True, REFUSED, _COMPARE, **_ONLY11),
    _f("rtol", True, REFUSED, _COMPARE, **_ONLY11),
    _f("accuracyThreshold", True, REFUSED, _COMPARE, **_ONLY11),
    _f("refPair", True, REFUSED, _COMPARE, **_ONLY11),
    _f("saveDebugTensors", True, REFUSED, _COMPARE),
    _f("saveAllDebugTensors", True, REFUSED, _COMPARE, **_ONLY11),
    _f("weightStreamingBudget", True, REFUSED, "weight streaming is not implemented"),
    # ----- tuning (trtexec 11)
    *(
        _f(n, v, REFUSED, _TUNE, **_ONLY11)
        for n, v in (
            ("tuneBuildRoutes", True),
            ("tuneBuildRouteFile", True),
            ("tuningSearch", True),
            ("tuningCacheFile", True),
            ("tuningTimeOut", True),
            ("saveAllEngines", False),
            ("dryRun", False),
            ("continue", False),
            ("helpBuildRoute", False),
            ("setBuildRoute", True),
        )
    ),
    # ----- reporting
    _f("verbose", False, IMPLEMENTED, "print placements and per-run averages"),
    _f("avgRuns", True, IMPLEMENTED, "averages over N consecutive runs with --verbose"),
    _f("percentile", True, REFUSED, "the summary reports the 90/95/99th percentiles"),
    _f("dumpRefit", False, REFUSED, "use `tandem inspect PLAN`"),
    _f("dumpOutput", False, REFUSED, "use `tandem run PLAN`"),
    _f("dumpRawBindingsToFile", False, REFUSED, "use `tandem run PLAN`"),
    _f("exportOutput", True, REFUSED, "use `tandem run PLAN --json`"),
    _f("dumpProfile", False, IMPLEMENTED, "print per-layer times"),
    _f(
        "dumpLayerInfo",
        False,
        IMPLEMENTED,
        "print every layer's device, precision and type (per --profilingVerbosity)",
    ),
    _f("dumpOptimizationProfile", False, IMPLEMENTED, "print the plan's optimization profiles"),
    _f("exportTimes", True, IMPLEMENTED, "write per-inference timings (trtexec JSON)"),
    _f("exportProfile", True, IMPLEMENTED, "write per-layer times (trtexec JSON)"),
    _f(
        "exportLayerInfo",
        True,
        IMPLEMENTED,
        "write layer and binding information (trtexec JSON, per --profilingVerbosity)",
    ),
    _f("help", False, IMPLEMENTED, "this list"),
    # ----- trtexec 8.x spellings older scripts still pass (trtexec 10 rejects them)
    _f(
        "workspace",
        True,
        IMPLEMENTED,
        "trtexec 8.x: read as --memPoolSize=workspace:N (MiB)",
        **_LEGACY,
    ),
    _f("buildOnly", False, IMPLEMENTED, "trtexec 8.x: read as --skipInference", **_LEGACY),
    _f(
        "nvtxMode",
        True,
        IMPLEMENTED,
        "trtexec 8.x: verbose|default|none read as "
        "--profilingVerbosity=detailed|layer_names_only|none",
        **_LEGACY,
    ),
    _f(
        "explicitBatch",
        False,
        NO_OP,
        "trtexec 8.x: ONNX networks are always explicit-batch",
        **_LEGACY,
    ),
    _f("streams", True, REFUSED, "trtexec 8.x spelling of --infStreams", **_LEGACY),
    _f("minTiming", True, NO_OP, "trtexec 8.x: see --avgTiming", **_LEGACY),
    # ----- Tandem's own
    _f(
        "target",
        True,
        IMPLEMENTED,
        "board to build for (catalog name or YAML); default: this board on a Jetson, else host",
        tandem=True,
    ),
    _f("backend", True, IMPLEMENTED, "auto|cuda|cpu for GPU segments (default auto)", tandem=True),
    _f("seed", True, IMPLEMENTED, "seed of the random input data (default 0)", tandem=True),
    _f(
        "calibPreprocess",
        True,
        IMPLEMENTED,
        "how --calib images become inputs, as `tandem build --calib-preprocess` takes it",
        tandem=True,
    ),
    _f(
        "help-table",
        False,
        IMPLEMENTED,
        "print this compatibility table (docs/trtexec.md)",
        tandem=True,
    ),
)
FLAGS: dict[str, Flag] = {f.name: f for f in FLAG_LIST}
# trtexec 8.x flags of non-ONNX front ends: refused by name (no Caffe/UFF import here)
REMOVED_8X = ("deploy model output uff uffInput uffNHWC maxBatch batch explicitPrecision").split()
