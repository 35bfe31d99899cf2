"""The Jetson board catalog: one YAML file per board in ``targets/boards/``, or a user's own.

``load_target("orin-agx-64gb")`` and ``load_target("my_board.yaml", power_mode="15W")`` both
return a validated :class:`~devices.hardware.TargetSpec`; ``load_target("host")`` describes the
machine Tandem runs on. Every validation error names the file, the line, the field and what was
expected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from devices.hardware import (
    DLA_VERSION_DEFAULTS,
    DlaSpec,
    GpuSpec,
    PowerMode,
    TargetSpec,
    arch_throughput,
    host_target,
)
from partitioner.errors import ConfigError
from partitioner.yaml_reader import YamlDoc, is_number, read_yaml, reject_unknown, require

BOARDS_DIR = Path(__file__).with_name("boards")

_TOP = {
    "name",
    "soc",
    "description",
    "software",
    "gpu",
    "dla",
    "dram",
    "power_modes",
    "default_power_mode",
    "notes",
}
_SOFTWARE = {"jetpack", "l4t", "cuda", "tensorrt", "dla_sw"}
_GPU = {"arch", "sms", "cuda_cores", "l2_kib"}
_DLA = {"version", "cores", *DLA_VERSION_DEFAULTS[1]}
_DRAM = {"type", "bus_bits"}
_MODE = {"name", "gpu_mhz", "gpu_sms", "dla_mhz", "emc_mhz", "budget_w"}
# nvpmodel names a capped mode by its budget (MODE_15W, 30W, 7W); MAXN needs an explicit budget_w.
_BUDGET_IN_NAME = re.compile(r"^(?:MODE_)?(\d+(?:\.\d+)?)W(?:_|$)")


def list_targets() -> list[str]:
    """Names of the catalog boards (``host`` is always available too)."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.yaml"))


def load_target(name_or_path: str | Path, power_mode: str | None = None) -> TargetSpec:
    """A catalog board by name, ``host``, or a board YAML file by path; at ``power_mode``
    (default: the board's highest)."""
    text = str(name_or_path)
    if text == "host":
        return host_target().with_power_mode(power_mode)
    path = Path(text)
    if path.suffix not in (".yaml", ".yml") and not path.exists():
        path = BOARDS_DIR / f"{text}.yaml"
        if not path.exists():
            raise ConfigError(
                f"unknown target '{text}': expected one of {', '.join(list_targets())}, "
                "'host', or a path to a board YAML file"
            )
    elif not path.exists():
        raise ConfigError(f"target file {text} does not exist")
    return parse_target(read_yaml(path, "target file")).with_power_mode(power_mode)


def _positive(v: Any) -> bool:
    return is_number(v) and v > 0


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _text(v: Any) -> bool:
    return isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v) != ""


def parse_target(doc: YamlDoc) -> TargetSpec:
    """Validate a board document and build its TargetSpec (at its default power mode)."""
    if not isinstance(doc.data, dict):
        raise doc.error((), "a mapping with name, soc, gpu, dla, dram and power_modes", doc.data)
    reject_unknown(doc, (), _TOP)
    for section, allowed in (
        ("software", _SOFTWARE),
        ("gpu", _GPU),
        ("dla", _DLA),
        ("dram", _DRAM),
    ):
        reject_unknown(doc, (section,), allowed)

    name = require(doc, ("name",), "a board name (string)", _text)
    soc = require(doc, ("soc",), "a SoC name such as t194 or t234", _text)
    require(
        doc,
        ("software",),
        "a mapping (jetpack, l4t, cuda, tensorrt, dla_sw)",
        lambda v: isinstance(v, dict),
    )
    sw = {
        k: require(doc, ("software", k), "a version string", _text, default=None) for k in _SOFTWARE
    }
    require(
        doc, ("gpu",), "a mapping (arch, sms, cuda_cores, l2_kib)", lambda v: isinstance(v, dict)
    )
    arch = require(
        doc,
        ("gpu", "arch"),
        "a GPU arch such as sm_72 or sm_87",
        lambda v: isinstance(v, str) and v.startswith("sm_"),
    )
    try:
        arch_throughput(arch)
    except ConfigError as err:
        raise doc.error(("gpu", "arch"), f"a known GPU arch ({err})", arch) from None
    sms = require(doc, ("gpu", "sms"), "a positive integer (SM count)", _positive_int)
    cores = require(doc, ("gpu", "cuda_cores"), "a positive integer", _positive_int, default=0)
    l2_kib = require(doc, ("gpu", "l2_kib"), "a positive integer (KiB)", _positive_int, default=0)

    bus_bits = require(
        doc, ("dram", "bus_bits"), "the DRAM bus width in bits (e.g. 256)", _positive_int
    )

    modes_raw = require(
        doc,
        ("power_modes",),
        "a non-empty list of power modes",
        lambda v: isinstance(v, list) and len(v) > 0,
    )
    dla_raw = require(
        doc,
        ("dla",),
        "a mapping (version, cores) or null for no DLA",
        lambda v: v is None or isinstance(v, dict),
    )

    modes: list[PowerMode] = []
    gpu_clocks: dict[str, float] = {}
    gpu_sms: dict[str, int] = {}
    dla_clocks: dict[str, float] = {}
    for i, _ in enumerate(modes_raw):
        p = ("power_modes", i)
        require(
            doc, p, "a mapping (name, gpu_mhz, dla_mhz, emc_mhz)", lambda v: isinstance(v, dict)
        )
        reject_unknown(doc, p, _MODE)
        mname = str(require(doc, p + ("name",), "a power mode name such as MAXN or 15W", _text))
        if mname in gpu_clocks:
            raise doc.error(p + ("name",), "a power mode name not used before", mname)
        gpu_mhz = require(doc, p + ("gpu_mhz",), "a positive number (MHz)", _positive)
        mode_sms = require(
            doc,
            p + ("gpu_sms",),
            f"a positive integer <= {sms}",
            lambda v: _positive_int(v) and v <= sms,
            default=sms,
        )
        emc_mhz = require(doc, p + ("emc_mhz",), "a positive number (MHz)", _positive)
        dla_mhz = None
        if dla_raw is not None:
            dla_mhz = require(
                doc, p + ("dla_mhz",), "a positive number (MHz; the board has a DLA)", _positive
            )
            dla_clocks[mname] = dla_mhz * 1e6
        elif "dla_mhz" in modes_raw[i]:
            raise doc.error(
                p + ("dla_mhz",),
                "no dla_mhz: this board has no DLA (dla: null)",
                modes_raw[i]["dla_mhz"],
            )
        named = _BUDGET_IN_NAME.match(mname)
        budget = require(
            doc,
            p + ("budget_w",),
            "a positive number (watts: the mode's nvpmodel power budget)",
            _positive,
            default=float(named.group(1)) if named else None,
        )
        gpu_clocks[mname] = gpu_mhz * 1e6
        gpu_sms[mname] = mode_sms
        # LPDDR4x/LPDDR5 move two words per EMC clock.
        bandwidth = 2.0 * emc_mhz * 1e6 * bus_bits / 8
        modes.append(
            PowerMode(
                mname,
                gpu_mhz * 1e6,
                mode_sms,
                dla_mhz * 1e6 if dla_mhz else None,
                bandwidth,
                float(budget) if budget is not None else None,
            )
        )

    gpu = GpuSpec(
        arch=arch,
        sm_count=sms,
        clock_hz=gpu_clocks,
        active_sms=gpu_sms,
        cuda_cores=cores,
        l2_bytes=l2_kib * 1024,
        name=str(name),
    )
    dla = _parse_dla(doc, dla_clocks) if dla_raw is not None else None

    names = [m.name for m in modes]
    default = require(
        doc,
        ("default_power_mode",),
        f"one of {', '.join(names)}",
        lambda v: str(v) in names,
        default=names[0],
    )
    return TargetSpec(
        name=str(name),
        soc=str(soc),
        gpu=gpu,
        dla=dla,
        power_modes=tuple(modes),
        default_power_mode=str(default),
        power_mode=str(default),
        jetpack=_opt_str(sw["jetpack"]),
        cuda=_opt_str(sw["cuda"]),
        l4t=_opt_str(sw["l4t"]),
        tensorrt=_opt_str(sw["tensorrt"]),
        dla_sw=_opt_str(sw["dla_sw"]),
        source=doc.source,
    )


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _parse_dla(doc: YamlDoc, clocks: dict[str, float]) -> DlaSpec:
    version = require(
        doc,
        ("dla", "version"),
        "1 (Xavier) or 2 (Orin)",
        lambda v: v in DLA_VERSION_DEFAULTS and not isinstance(v, bool),
    )
    cores = require(doc, ("dla", "cores"), "a positive integer (DLA core count)", _positive_int)
    overrides = {
        k: require(doc, ("dla", k), "a positive integer", _positive_int)
        for k in DLA_VERSION_DEFAULTS[version]
        if k in doc.data["dla"]
    }
    return DlaSpec.for_version(version, cores, clocks, **overrides)
