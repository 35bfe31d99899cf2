"""Target catalog: every board loads, user files work, bad files name file + line + field."""

from __future__ import annotations

from pathlib import Path

import pytest

from partitioner.errors import ConfigError
from targets.catalog import BOARDS_DIR, list_targets, load_target

BOARDS = {
    # name: (arch, sms, dla version or None, dla cores, default mode)
    "xavier-agx": ("sm_72", 8, 1, 2, "MAXN"),
    "xavier-nx": ("sm_72", 6, 1, 2, "20W"),
    "orin-agx-64gb": ("sm_87", 16, 2, 2, "MAXN"),
    "orin-agx-32gb": ("sm_87", 14, 2, 2, "MAXN"),
    "orin-nx-16gb": ("sm_87", 8, 2, 2, "MAXN"),
    "orin-nx-8gb": ("sm_87", 8, 2, 1, "MAXN"),
    "orin-nano-8gb": ("sm_87", 8, None, 0, "MAXN_SUPER"),
}


def test_catalog_lists_every_board():
    assert set(BOARDS) <= set(list_targets())


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_loads(name: str):
    arch, sms, dla_version, cores, default = BOARDS[name]
    t = load_target(name)
    assert (t.name, t.gpu.arch, t.gpu.sm_count, t.power_mode) == (name, arch, sms, default)
    assert t.default_power_mode == default == t.power_modes[0].name
    if dla_version is None:
        assert t.dla is None and t.dla_devices == ()
    else:
        assert (t.dla.version, t.dla.cores) == (dla_version, cores)
        assert t.dla_devices == tuple(f"dla{i}" for i in range(cores))
    # The default (highest) mode is the fastest GPU mode and has the most DRAM bandwidth.
    peaks = [t.gpu.peak_ops_per_s("fp16", m.name) for m in t.power_modes]
    assert peaks[0] == max(peaks)
    assert t.power_modes[0].dram_bytes_per_s == max(m.dram_bytes_per_s for m in t.power_modes)
    for m in t.power_modes:
        mode_target = load_target(name, power_mode=m.name)
        assert mode_target.mode == m


@pytest.mark.parametrize(
    "name, nvrtc",
    [("xavier-agx", 11), ("xavier-nx", 11), ("orin-agx-64gb", 12), ("orin-nano-8gb", 12)],
)
def test_nvrtc_major(name: str, nvrtc: int):
    assert load_target(name).nvrtc_major == nvrtc


def test_xavier_nvrtc_is_capped_at_12(tmp_path: Path):
    text = (BOARDS_DIR / "xavier-agx.yaml").read_text(encoding="utf-8")
    text = text.replace('cuda: "11.4"', 'cuda: "13.0"')
    path = tmp_path / "xavier13.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_target(str(path)).nvrtc_major == 12  # NVRTC 13 rejects sm_72


@pytest.mark.parametrize(
    "name, mode, gpu_hz, dla_hz, dram_gbps",
    [
        ("xavier-agx", "MAXN", 1377e6, 1395.2e6, 136.5),
        ("xavier-agx", "15W", 670e6, 750e6, 85.2),
        ("orin-agx-64gb", "15W", 408e6, 614.4e6, 136.5),
        ("orin-agx-64gb", "mode_30w", 612e6, 1369.6e6, 204.7),
        ("orin-nx-16gb", "25W", 408e6, 614.4e6, 102.4),
    ],
)
def test_power_mode_clocks(name, mode, gpu_hz, dla_hz, dram_gbps):
    t = load_target(name, power_mode=mode)
    assert t.gpu_clock_hz == pytest.approx(gpu_hz)
    assert t.dla_clock_hz == pytest.approx(dla_hz)
    assert t.dram_bytes_per_s / 1e9 == pytest.approx(dram_gbps, abs=0.1)


def test_dram_bandwidth_per_mode():
    t = load_target("orin-agx-64gb")
    assert {k: round(v / 1e9, 1) for k, v in t.dram_bandwidth.items()} == {
        "MAXN": 204.7, "50W": 204.7, "30W": 204.7, "15W": 136.5}  # fmt: skip


def test_orin_30w_gates_tpcs():
    t = load_target("orin-agx-64gb", "30W")
    assert t.gpu.sms("30W") == 8 and t.mode.gpu_sms == 8


def test_unknown_power_mode_lists_the_modes():
    with pytest.raises(ConfigError, match=r"no power mode '99W'.*MAXN, 50W, 30W, 15W"):
        load_target("orin-agx-64gb", "99W")


def test_unknown_target_lists_the_catalog():
    with pytest.raises(ConfigError, match=r"unknown target 'orin-mega'.*xavier-agx"):
        load_target("orin-mega")


def test_host_target_has_no_dla():
    t = load_target("host")
    assert t.dla is None and t.name == "host"


def test_user_yaml_path(tmp_path: Path):
    text = (
        (BOARDS_DIR / "orin-nx-8gb.yaml")
        .read_text(encoding="utf-8")
        .replace("name: orin-nx-8gb", "name: my-orin")
    )
    path = tmp_path / "my_board.yaml"
    path.write_text(text, encoding="utf-8")
    t = load_target(str(path), power_mode="15W")
    assert (t.name, t.power_mode, t.dla.cores, t.source) == ("my-orin", "15W", 1, str(path))


MINIMAL = """\
name: tiny
soc: t234
software:
  cuda: "12.6"
gpu:
  arch: sm_87
  sms: 4
dla:
  version: 2
  cores: 1
dram:
  bus_bits: 64
power_modes:
  - name: MAXN
    gpu_mhz: 600
    dla_mhz: 600
    emc_mhz: 2000
"""


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "board.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_minimal_user_board(tmp_path: Path):
    t = load_target(_write(tmp_path, MINIMAL))
    assert t.dla.int8_macs_per_cycle == 8192 and t.jetpack is None
    assert t.dram_bytes_per_s == pytest.approx(2 * 2000e6 * 8)


@pytest.mark.parametrize(
    "old, new, message",
    [
        # wrong type: names the line of the field
        (
            "  sms: 4",
            "  sms: four",
            r"board\.yaml:7: gpu\.sms: expected a positive integer",
        ),
        # missing field: names the parent's line
        (
            "  arch: sm_87\n",
            "",
            r"board\.yaml:5: gpu\.arch: is missing: expected a GPU arch",
        ),
        (
            "    emc_mhz: 2000\n",
            "",
            r"board\.yaml:14: power_modes\[1\]\.emc_mhz: is missing",
        ),
        (
            "    dla_mhz: 600",
            "    dla_mhz: -1",
            r"board\.yaml:16: power_modes\[1\]\.dla_mhz:",
        ),
        (
            "  version: 2",
            "  version: 3",
            r"board\.yaml:9: dla\.version: expected 1 \(Xavier\)",
        ),
        (
            "  arch: sm_87",
            "  arch: volta",
            r"board\.yaml:6: gpu\.arch: expected a GPU arch",
        ),
        ("  sms: 4", "  sms: 4\n  smz: 5", r"board\.yaml:8: gpu\.smz: unknown key"),
        ("  bus_bits: 64", "  bus_bits: [64]", r"board\.yaml:12: dram\.bus_bits:"),
        (
            "name: tiny",
            "name: tiny\ndefault_power_mode: TURBO",
            r"board\.yaml:2: default_power_mode: expected one of MAXN",
        ),
        (
            "  - name: MAXN",
            "  - name: MAXN\n    gpu_sms: 9",
            r"board\.yaml:15: power_modes\[1\]\.gpu_sms: expected a positive integer <= 4",
        ),
    ],
)
def test_bad_board_names_file_line_and_field(tmp_path: Path, old: str, new: str, message: str):
    assert old in MINIMAL
    with pytest.raises(ConfigError, match=message):
        load_target(_write(tmp_path, MINIMAL.replace(old, new, 1)))


def test_invalid_yaml_syntax_names_the_line(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"board\.yaml:\d+: invalid YAML"):
        load_target(_write(tmp_path, MINIMAL.replace("  sms: 4", "  sms: [4")))


def test_not_a_mapping(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"board\.yaml:1: <document>: expected a mapping"):
        load_target(_write(tmp_path, "- just\n- a list\n"))


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_target("/nonexistent/board.yaml")


@pytest.mark.gpu
def test_host_target_describes_the_local_gpu():
    t = load_target("host")
    assert t.gpu is not None and t.gpu.arch.startswith("sm_") and t.gpu.sm_count > 0
    assert t.gpu_clock_hz > 0 and t.dram_bytes_per_s > 1e10
    assert t.cuda_major is not None and t.nvrtc_major == min(t.cuda_major, 99)
    assert t.dla is None and t.power_mode == "default"
