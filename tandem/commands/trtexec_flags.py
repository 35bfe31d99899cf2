"""trtexec's command line for ``tandem exec``: parsing, the per-generation rules of the flag
table (``trtexec_table``: sources there), memory-pool sizes, I/O formats, and the generated
compatibility table ``docs/trtexec.md``.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from partitioner.errors import TandemError
from tandem.commands.trtexec_table import (
    FLAG_LIST,
    FLAGS,
    GENERATIONS,
    IMPLEMENTED,
    NO_OP,
    REFUSED,
    REMOVED_8X,
)


class UsageError(TandemError):
    """A command line trtexec would not accept, or a flag Tandem does not implement."""

    exit_code = 2


# ----- parsed options ----------------------------------------------------------------------------
@dataclass
class ExecOptions:
    values: dict[str, str] = field(default_factory=dict)
    switches: set[str] = field(default_factory=set)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def on(self, name: str) -> bool:
        return name in self.switches

    def given(self, name: str) -> bool:
        return name in self.values or name in self.switches

    def number(self, name: str, default: float, kind: Callable[[str], float] = float) -> float:
        text = self.values.get(name)
        if text is None:
            return default
        try:
            value = kind(text)
        except ValueError:
            raise UsageError(f"--{name}={text}: expected a number") from None
        if value < 0:
            raise UsageError(f"--{name}={text}: expected a non-negative number")
        return value


def parse_flags(argv: Sequence[str]) -> ExecOptions:
    """trtexec's syntax: ``--name=value``, ``--name value`` for valued flags, ``--switch``.
    Every flag of either trtexec generation parses; :func:`check_flags` then applies the
    target's generation."""
    opts = ExecOptions()
    unknown: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--") or len(arg) < 3:
            raise UsageError(f"unexpected argument '{arg}': trtexec flags look like --name=value")
        name, eq, value = arg[2:].partition("=")
        flag = FLAGS.get(name)
        if flag is None:
            unknown.append(f"--{name}")
            continue
        if flag.value:
            if not eq:
                if i >= len(argv) or argv[i].startswith("--"):
                    raise UsageError(f"--{name} needs a value: --{name}=VALUE")
                value = argv[i]
                i += 1
            opts.values[name] = value
        else:
            if eq:
                raise UsageError(f"--{name} takes no value (got --{name}={value})")
            opts.switches.add(name)
    if unknown:
        removed = [u for u in unknown if u[2:] in REMOVED_8X]
        other = [u for u in unknown if u[2:] not in REMOVED_8X]
        parts = []
        if removed:
            parts.append(
                f"trtexec 8.x flag(s) removed in trtexec 10 (Caffe/UFF/implicit batch): "
                f"{', '.join(removed)}"
            )
        if other:
            parts.append(f"unknown flag(s): {', '.join(other)}")
        raise UsageError("; ".join(parts) + " (tandem exec --help lists every trtexec flag)")
    return opts


def check_flags(opts: ExecOptions, generation: int) -> list[str]:
    """Refuse what trtexec ``generation`` (10 or 11) would not run here, each flag with its
    reason (exit 2); return the no-op notes to print, one per flag, as trtexec warns."""
    refused: list[str] = []
    notes: list[str] = []
    for name in sorted(opts.values.keys() | opts.switches):
        flag = FLAGS[name]
        status, note = flag.rule(generation)
        if not flag.tandem and flag.versions and generation not in flag.versions:
            other = " and ".join(f"trtexec {g}" for g in flag.versions)
            refused.append(
                f"--{name} exists only in {other} (this target's TensorRT is "
                f"{generation}.x): {note}"
            )
        elif status == REFUSED:
            refused.append(f"--{name}: {note}")
        elif status == NO_OP:
            notes.append(f"--{name} has no effect here: {note}")
        elif not flag.versions:
            notes.append(f"--{name}: {note} (trtexec 10 no longer accepts it)")
    if refused:
        raise UsageError("refused: " + "; ".join(refused))
    return notes


def generation_of(tensorrt: str | None) -> int:
    """The trtexec generation of a target's TensorRT version (``10.3``, ``11.4.1``); 10 when the
    target does not say (the host, an older board file)."""
    if not tensorrt:
        return 10
    m = re.match(r"(\d+)", tensorrt)
    return 11 if m and int(m.group(1)) >= 11 else 10


# ----- --memPoolSize -----------------------------------------------------------------------------
POOLS = ("workspace", "dlaSRAM", "dlaLocalDRAM", "dlaGlobalDRAM", "tacticSharedMem")
_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}  # trtexec's kUNIT_MULTIPLIERS
_SIZE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([A-Za-z]*)$")


def parse_size(text: str, flag: str) -> int:
    """``1024`` (MiB), ``0.5M``, ``64K``, ``2G``, ``1024MiB`` -> bytes, rounded down (trtexec)."""
    m = _SIZE.match(text.strip())
    suffix = m.group(2).upper() if m else ""
    # trtexec reads one suffix letter; "MiB" / "MB", as scripts write them, mean MiB here too
    unit = suffix if suffix in ("", "B") else suffix.removesuffix("B").removesuffix("I")
    unit = unit or "M"
    if not m or unit not in _UNITS:
        raise UsageError(
            f"{flag}: cannot read size '{text}'; expected a number with an optional "
            "B, K, M or G suffix (MiB when none)"
        )
    return int(math.floor(float(m.group(1)) * _UNITS[unit]))


def parse_mem_pools(text: str) -> dict[str, int]:
    """``workspace:1024,dlaSRAM:1M`` -> bytes per pool; dlaSRAM rounded down to a power of 2."""
    pools: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, size = item.partition(":")
        if not sep or name not in POOLS:
            raise UsageError(
                f"--memPoolSize: cannot read '{item}'; expected POOL:SIZE with POOL "
                f"one of {', '.join(POOLS)}"
            )
        value = parse_size(size, f"--memPoolSize {name}")
        if name == "dlaSRAM" and value > 0:
            value = 1 << (value.bit_length() - 1)
        pools[name] = value
    if not pools:
        raise UsageError("--memPoolSize: expected POOL:SIZE[,POOL:SIZE...]")
    return pools


# ----- --inputIOFormats / --outputIOFormats ------------------------------------------------------
# format -> (dtypes it allows, least rank, DLA-native): NvInferRuntimeBase.h TensorFormat (10.3).
FORMATS: dict[str, tuple[frozenset[str], int, bool]] = {
    "chw": (frozenset(), 0, False),  # kLINEAR: any type
    "chw2": (frozenset({"fp16", "bf16"}), 3, False),
    "hwc8": (frozenset({"fp16", "bf16"}), 3, False),
    "chw4": (frozenset({"int8", "fp16"}), 3, True),  # the DLA's HWC4 image input when C <= 4
    "chw16": (frozenset({"int8", "fp16"}), 3, True),  # the DLA's native FP16 feature format
    "chw32": (frozenset(), 3, True),  # the DLA's native INT8 feature format
    "dhwc8": (frozenset({"fp16", "bf16"}), 4, False),
    "cdhw32": (frozenset({"fp16", "int8"}), 4, False),
    "hwc": (frozenset({"fp32", "uint8"}), 3, False),
    "dla_linear": (frozenset({"fp16", "int8"}), 4, True),
    "dla_hwc4": (frozenset({"fp16", "int8"}), 4, True),  # C in {1, 3, 4}
    "hwc16": (frozenset({"fp16"}), 3, False),
    "dhwc": (frozenset({"fp32"}), 4, False),
}
IO_TYPES = ("fp32", "fp16", "bf16", "int32", "int64", "int8", "uint8", "bool")
_NUMPY_TYPE = {
    "float32": "fp32",
    "float16": "fp16",
    "int32": "int32",
    "int64": "int64",
    "int8": "int8",
    "uint8": "uint8",
    "bool": "bool",
}


@dataclass(frozen=True)
class IOFormat:
    dtype: str | None  # None: trtexec 11 (formats only: the tensor keeps the model's type)
    formats: tuple[str, ...]

    @property
    def dla_native(self) -> bool:
        """The DLA reads/writes this layout itself: no GPU reformat kernel at the boundary."""
        return all(FORMATS[f][2] for f in self.formats)

    def text(self) -> str:
        return (f"{self.dtype}:" if self.dtype else "") + "+".join(self.formats)


def parse_io_formats(text: str, flag: str, generation: int) -> list[IOFormat]:
    """trtexec 10: ``type:fmt[+fmt],...``; trtexec 11: ``fmt[+fmt],...`` (types come from the
    strongly typed network; a ``type:`` prefix is accepted there and checked against it)."""
    out: list[IOFormat] = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        dtype, sep, fmts = item.rpartition(":")
        if not sep:
            dtype, fmts = "", item
        if not dtype and generation == 10:
            raise UsageError(
                f"{flag}: '{item}' needs a type in trtexec 10: TYPE:FORMAT, e.g. fp16:chw16"
            )
        if dtype and dtype not in IO_TYPES:
            raise UsageError(
                f"{flag}: unknown type '{dtype}' in '{item}'; expected one of {', '.join(IO_TYPES)}"
            )
        names = tuple(fmts.split("+"))
        bad = [f for f in names if f not in FORMATS]
        if bad:
            raise UsageError(
                f"{flag}: unknown format '{bad[0]}' in '{item}'; expected one of "
                f"{', '.join(FORMATS)}"
            )
        out.append(IOFormat(dtype or None, names))
    if not out:
        raise UsageError(f"{flag}: expected TYPE:FORMAT[,TYPE:FORMAT...]")
    return out


def bind_io_formats(
    formats: list[IOFormat],
    tensors: Sequence[tuple[str, tuple[object, ...] | None, str]],
    flag: str,
    typed: bool = False,
) -> dict[str, IOFormat]:
    """One format per tensor (in the model's order) or one for all, each checked against the
    tensor's rank and type: ``tensors`` is ``(name, shape, numpy dtype)``. ``typed`` (trtexec
    11's strongly typed networks): a type given must be the model's own."""
    if len(formats) not in (1, len(tensors)):
        raise UsageError(
            f"{flag}: {len(formats)} formats for {len(tensors)} tensors "
            f"({', '.join(t[0] for t in tensors)}); give one per tensor in that "
            "order, or one for all"
        )
    bound: dict[str, IOFormat] = {}
    for k, (name, shape, np_dtype) in enumerate(tensors):
        fmt = formats[0] if len(formats) == 1 else formats[k]
        model_type = _NUMPY_TYPE.get(np_dtype, np_dtype)
        dtype = fmt.dtype or model_type
        rank = len(shape) if shape is not None else None
        for f in fmt.formats:
            types, least_rank, _ = FORMATS[f]
            if types and dtype not in types:
                raise UsageError(
                    f"{flag}: '{name}' as {dtype}:{f}: format {f} takes "
                    f"{'/'.join(sorted(types))} only"
                )
            if rank is not None and rank < least_rank:
                raise UsageError(
                    f"{flag}: '{name}' has rank {rank}; format {f} needs at least "
                    f"{least_rank} dimensions"
                )
            if (
                f == "dla_hwc4"
                and shape is not None
                and rank == 4
                and isinstance(shape[1], int)
                and shape[1] not in (1, 3, 4)
            ):
                raise UsageError(
                    f"{flag}: '{name}' has {shape[1]} channels; dla_hwc4 takes 1, 3 "
                    "or 4 (an image input)"
                )
        if fmt.dtype and fmt.dtype != model_type and (typed or fmt.dtype not in ("fp16", "int8")):
            raise UsageError(
                f"{flag}: '{name}' is {model_type} in the model; a {fmt.dtype} "
                "binding is not supported" + ("" if typed else " (fp16 and int8 bindings are)")
            )
        bound[name] = fmt
    return bound


# The DLA standalone rule of trtexec 10.3 (AllOptions::parse): inputs fp16/int8 dla_linear or
# hwc4 (chw4/dla_hwc4), fp16 chw16, int8 chw32; outputs the same without hwc4. trtexec 11 checks
# the formats only.
def standalone_format_ok(fmt: IOFormat, is_input: bool, generation: int) -> bool:
    if len(fmt.formats) != 1:
        return False
    f = fmt.formats[0]
    hwc4 = is_input and f in ("chw4", "dla_hwc4")
    if generation == 11 and fmt.dtype is None:
        return f in ("dla_linear", "chw16", "chw32") or hwc4
    if fmt.dtype == "int8":
        return f in ("dla_linear", "chw32") or hwc4
    if fmt.dtype == "fp16":
        return f in ("dla_linear", "chw16") or hwc4
    return False


# ----- the generated compatibility table ---------------------------------------------------------
def markdown_table() -> str:
    """``docs/trtexec.md``: every flag, per trtexec generation, with what Tandem does."""
    lines = [
        "# `tandem exec`: trtexec flag compatibility",
        "",
        "Generated by `tandem exec --help-table` from `tandem/commands/trtexec_table.py` (a test",
        "keeps this file equal to it). Columns: what `tandem exec` does with the flag when the",
        "target's TensorRT is 10.x (JetPack 6, trtexec 10.3) and 11.x (JetPack 7.2, trtexec 11);",
        "`-` where that trtexec has no such flag (refused, naming the version). A no-op flag is",
        "accepted and its note printed as a warning, as trtexec does for the flags it ignores. The",
        "target's generation comes from its `software.tensorrt` (`--target`; on a Jetson, the",
        "board's own). Sources: the module's docstring.",
        "",
        "| flag | trtexec 10.3 | trtexec 11 | note |",
        "|---|---|---|---|",
    ]
    for flag in FLAG_LIST:
        cells = []
        for gen in GENERATIONS:
            if flag.tandem:
                cells.append("Tandem")
            elif not flag.versions:
                cells.append(f"{flag.status} (8.x)")
            elif gen not in flag.versions:
                cells.append("-")
            else:
                cells.append(flag.rule(gen)[0])
        note = flag.note
        if flag.v11 is not None and flag.v11[1] != flag.note:
            note = (
                f"{flag.note}. "
                + ("" if flag.v11[1].startswith("trtexec 11") else "trtexec 11: ")
                + flag.v11[1]
            )
        spelled = f"--{flag.name}" + ("=V" if flag.value else "")
        lines.append(f"| `{spelled}` | {cells[0]} | {cells[1]} | {note.replace('|', '/')} |")
    removed = ", ".join(f"`--{n}`" for n in REMOVED_8X)
    lines += ["", f"Refused as removed in trtexec 10 (Caffe/UFF/implicit batch): {removed}.", ""]
    return "\n".join(lines + NOTES)


NOTES = [
    "## What the implemented flags do",
    "",
    "- `--skipInference` (trtexec 8.x: `--buildOnly`): build, write `--saveEngine`, dump or",
    "  export the layer information, and exit before any inference.",
    "- `--memPoolSize`: sizes in bytes (B/K/M/G, MiB without a suffix, decimals rounded down;",
    "  dlaSRAM down to a power of 2, as trtexec) are recorded in the plan's",
    "  `metadata.trtexec.mem_pool_bytes`; a dlaSRAM larger than the board's DLA SRAM is refused.",
    "  Nothing else changes: the DLA latency model keeps intermediate tensors in DRAM and does",
    "  not model pool capacities (`dla_sim/latency.py`), so placement and costs are unchanged.",
    "- `--inputIOFormats` / `--outputIOFormats`: one `type:format[+format]` per tensor in the",
    "  model's order, or one for all (trtexec 11: `format` alone, the type is the model's). Each",
    "  is checked against the tensor's rank and type (TensorRT's `TensorFormat` rules;",
    "  `dla_hwc4` also needs 1, 3 or 4 channels). A tensor in a DLA format (`chw4`, `chw16`,",
    "  `chw32`, `dla_linear`, `dla_hwc4`) that the DLA reads or writes crosses the GPU<->DLA",
    "  boundary without the GPU reformat kernel: its predicted cost is the switch overhead only",
    "  (`devices/cost.transition_cost_for`). The formats are recorded in",
    "  `metadata.trtexec.io_formats`; the bindings `tandem exec` and `tandem run` feed stay in",
    "  the model's dtype and layout.",
    "- `--buildDLAStandalone`: needs `--useDLACore` and DLA I/O formats, refuses",
    "  `--allowGPUFallback`, implies `--skipInference`; the build fails naming the first layer",
    "  that does not run on the DLA. The plan then has a single DLA segment, the network cuDLA",
    "  would load; it is a Tandem plan, not a cuDLA loadable file. On a Jetson, the runtime hands",
    "  a DLA segment to TensorRT there (`devices/dla.TrtDlaRunner`), which compiles the",
    "  loadable; the board-side export per TensorRT generation is documented with that runner.",
    "- `--profilingVerbosity` (trtexec 8.x: `--nvtxMode`): recorded at build like TensorRT;",
    "  `detailed` exports every layer's device, precision, type, segment and reason;",
    "  `layer_names_only` (trtexec's default) the names; `none` the layer indices.",
    "- TensorRT 11 targets (and `--stronglyTyped` on 10.x): the precision is the model's: INT8",
    "  when it has Q/DQ nodes (their scales, no calibrator), FP16 when its float tensors are",
    "  mostly FP16, else FP32 (which the DLA cannot run). `--fp16`, `--int8`, `--best` and",
    "  `--calib` are refused on TensorRT 11 as trtexec 11 does. NVIDIA's TensorRT 11.4.0",
    "  documentation says DLA is not supported on JetPack in 11.4.0",
    "  (inference-library/dla-build-and-run.html); `--useDLACore` on a TensorRT 11 target is",
    "  still built and predicted, following trtexec 11's flags, for the board generation the",
    "  target file names.",
    "- `--target`: without it, on a Jetson whose device tree names a catalog board (and",
    "  `/proc/meminfo` its memory size), that board; elsewhere the host.",
    "",
]


def help_text() -> str:
    """The implemented flags with the first clause of their note, and the no-ops by name, in
    100 columns; the full table is ``--help-table``."""
    listed = [f for f in FLAG_LIST if f.status == IMPLEMENTED and (f.versions or f.tandem)]
    width = max(len(f.name) for f in listed) + 2
    lines = [
        "usage: tandem exec --onnx=MODEL.onnx | --loadEngine=PLAN [trtexec flags]",
        "Every flag of trtexec 10.3 and 11 is known: `tandem exec --help-table` (docs/trtexec.md)",
        "says what each does on each TensorRT generation.",
        "",
    ]
    for f in listed:
        text = textwrap.wrap(f.note.split("; ")[0], 100 - width - 4) or [""]
        lines.append(f"  --{f.name:<{width}}{text[0]}")
        lines += [" " * (width + 4) + t for t in text[1:]]
    noops = ", ".join(f"--{f.name}" for f in FLAG_LIST if f.status == NO_OP and f.versions)
    lines += ["", *textwrap.wrap(f"Accepted as no-ops (a note says why): {noops}", 100)]
    return "\n".join(lines)
