"""Inventories that would cost gigabytes, recurse without end or reach the resolver are refused
in one line naming the file and line, quickly."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from partitioner.errors import ConfigError
from targets import inventory
from targets.inventory import (
    MAX_GROUP_DEPTH,
    MAX_GROUPS,
    MAX_HOSTS,
    MAX_INI_LINES,
    MAX_MEMBERSHIPS,
    expand_host_pattern,
    load_inventory,
)


def _refused(tmp_path: Path, text: str, name: str = "hosts") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert time.perf_counter() - started < 5.0
    message = str(info.value)
    assert message.startswith(f"{path}:") and "\n" not in message, message
    return message.removeprefix(str(path))


def test_a_huge_range_is_counted_not_expanded(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        message = _refused(tmp_path, "[jets]\norin[0:9999999999] tandem_target=t\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20, peak
    assert message == (
        ":2: host orin[0:9999999999]: host range [0:9999999999] yields 10000000000 hosts; "
        f"expected 1 to {MAX_HOSTS}"
    )
    with pytest.raises(ValueError, match="yields 0 hosts"):
        expand_host_pattern("n[9:1]")
    with pytest.raises(ValueError, match="bad host range"):
        expand_host_pattern("n[1:" + "9" * 5000 + "]")


def test_the_host_limit_covers_the_whole_file(tmp_path: Path) -> None:
    half = MAX_HOSTS // 2 + 1
    ini = f"[a]\nx[1:{half}] tandem_target=t\n[b]\ny[1:{half}] tandem_target=t\n"
    assert _refused(tmp_path, ini) == f":4: host y{half - 1}: more than {MAX_HOSTS} hosts"
    many = "\n".join(f"h{i} tandem_target=t" for i in range(MAX_HOSTS + 1)) + "\n"
    assert f"more than {MAX_HOSTS} hosts" in _refused(tmp_path, "[a]\n" + many)
    yaml = f"all:\n  hosts:\n    x[1:{half}]:\n    y[1:{half}]:\n"
    assert (
        _refused(tmp_path, yaml, "inv.yml") == f":4: host y{half - 1}: more than {MAX_HOSTS} hosts"
    )
    again = "[a]\nx[1:9000] tandem_target=t\n[b]\nx[1:9000]\n"  # the same hosts twice: fine
    assert len(load_inventory(_write(tmp_path, again)).boards) == 9000
    repeats = "".join(f"[g{i}]\nx[1:9000]\n" for i in range(MAX_MEMBERSHIPS // 9000 + 1))
    assert "host x[1:9000]: host range [1:9000] yields 9000 hosts" in _refused(tmp_path, repeats)


def test_ini_lines_are_bounded(tmp_path: Path) -> None:
    text = "[g:vars]\n" + "".join(f"k{i}='v'\n" for i in range(MAX_INI_LINES + 1))
    message = _refused(tmp_path, text)
    assert message == f":{MAX_INI_LINES + 1}: more than {MAX_INI_LINES} lines besides comments"


def test_memberships_through_children_are_bounded(tmp_path: Path) -> None:
    lines = ["[big]", "h[1:9998] tandem_target=t"]
    for g in range(MAX_MEMBERSHIPS // 9998 + 1):
        lines += [f"[g{g}:children]", "big", f"[g{g}:vars]", f"v{g}=1"]
    message = _refused(tmp_path, "\n".join(lines) + "\n")
    assert f"the groups hold more than {MAX_MEMBERSHIPS} hosts in all" in message


def _chain_ini(depth: int, reverse: bool) -> str:
    lines = ["[g0]", "h0 tandem_target=t"]
    order = reversed(range(depth)) if reverse else range(depth)
    for i in order:
        lines += [f"[g{i}:children]", f"g{i + 1}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("reverse", [False, True], ids=["top-down", "bottom-up"])
def test_deep_children_chains_stop_at_the_depth_limit(tmp_path: Path, reverse: bool) -> None:
    message = _refused(tmp_path, _chain_ini(MAX_GROUP_DEPTH + 5, reverse))
    assert f"children nested more than {MAX_GROUP_DEPTH} deep" in message
    inv = load_inventory(_write(tmp_path, _chain_ini(MAX_GROUP_DEPTH - 1, reverse)))
    assert inv.groups["g0"] == ["h0"] and inv.board("h0").target == "t"


def test_a_3000_deep_chain_is_one_line(tmp_path: Path) -> None:
    assert "more than 1000 groups" in _refused(tmp_path, _chain_ini(3000, False))
    # Within the group limit, the walk stops at the depth limit, not at Python's.
    assert "nested more than" in _refused(tmp_path, _chain_ini(MAX_GROUPS - 3, False))
    nested = "{h: {tandem_target: t}}"
    for i in reversed(range(3000)):
        nested = f"{{children: {{g{i}: {nested}}}}}"
    message = _refused(tmp_path, f"all: {nested}\n", "inv.yml")
    assert message.startswith(":1: all.children...") and "nested more than" in message


def test_a_lattice_of_groups_is_resolved_once_per_group(tmp_path: Path) -> None:
    # Each level's two groups both contain both groups of the next level: 2**30 paths.
    lines = ["[l30a]", "h1 tandem_target=t", "[l30b]", "h2 tandem_target=t"]
    for level in range(30):
        for side in "ab":
            lines += [f"[l{level}{side}:children]", f"l{level + 1}a", f"l{level + 1}b"]
    inv = load_inventory(_write(tmp_path, "\n".join(lines) + "\n"))
    assert inv.groups["l0a"] == ["h1", "h2"]


def test_a_cycle_names_its_groups(tmp_path: Path) -> None:
    message = _refused(tmp_path, "[a:children]\nb\n[b:children]\nc\n[c:children]\na\n")
    assert message == ":1: group a: the groups' children form a cycle (a -> b -> c -> a)"


def test_a_child_overrides_its_parents_vars(tmp_path: Path) -> None:
    ini = (
        "[zparent:children]\nachild\n[zparent:vars]\ntandem_target=parent\n"
        "[achild]\nh1\n[achild:vars]\ntandem_target=child\n"
    )
    assert load_inventory(_write(tmp_path, ini)).board("h1").target == "child"


@pytest.mark.parametrize(
    "host",
    ["../../etc", "a..b", "-oProxyCommand=x", "host name", "exa mple", "x" * 64, "é.lab", "a/b"],
)
def test_hosts_must_be_names_or_addresses(tmp_path: Path, host: str) -> None:
    message = _refused(tmp_path, f"[jets]\norin1 ansible_host='{host}' tandem_target=t\n")
    assert message.startswith(":2: host orin1: ansible_host: expected a host name, IPv4 or IPv6")
    yaml = f"boards:\n  b1:\n    host: '{host}'\n    target: t\n"
    assert _refused(tmp_path, yaml, "inv.yaml").startswith(":3: boards.b1.host: expected a host")


@pytest.mark.parametrize(
    "host", ["10.0.0.5", "::1", "fe80::1%eth0", "orin-1.lab.example.com", "orin_1", "jetson."]
)
def test_valid_hosts_load(tmp_path: Path, host: str) -> None:
    inv = load_inventory(_write(tmp_path, f"[jets]\norin1 ansible_host={host} tandem_target=t\n"))
    assert inv.board("orin1").host == host


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ok.ini"
    path.write_text(text, encoding="utf-8")
    return path


def test_limits_are_those_documented() -> None:
    assert (inventory.MAX_HOSTS, inventory.MAX_GROUP_DEPTH) == (10_000, 32)
