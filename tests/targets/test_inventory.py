"""Board inventory: Tandem YAML, Ansible INI and Ansible YAML, and errors naming file:line:field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from partitioner.errors import ConfigError
from targets.inventory import expand_host_pattern, load_inventory

TANDEM_YAML = """\
boards:
  orin1:
    host: 10.0.0.5
    port: 2201
    user: nvidia
    key: keys/orin
    target: orin-agx-64gb
  nx1: {host: nx1.lab, target: orin-nx-16gb, remote_dir: /opt/tandem, agent: false}
groups:
  lab: [orin1, nx1]
"""

ANSIBLE_INI = """\
# Jetsons in the lab
[jetsons]
orin[01:03] ansible_user=nvidia
xnx ansible_host=10.0.0.9 ansible_port=2222 tandem_target=xavier-nx

[jetsons:vars]
tandem_target=orin-agx-64gb
ansible_ssh_private_key_file=/keys/jet

[lab:children]
jetsons

[servers]
build1:2200 ansible_host=10.1.1.1
"""

ANSIBLE_YAML = """\
all:
  vars:
    ansible_user: ubuntu
  children:
    jetsons:
      vars: {tandem_target: orin-nx-16gb}
      hosts:
        nx1: {ansible_host: 1.2.3.4}
        nx2:
      children:
        special:
          hosts:
            nx3: {tandem_target: xavier-agx, ansible_port: 2200, tandem_remote_dir: /srv/t}
"""


def write(tmp_path: Path, text: str, name: str = "inventory.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_tandem_yaml(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, TANDEM_YAML))
    orin = inv.board("orin1")
    assert (orin.host, orin.port, orin.user, orin.target) == (
        "10.0.0.5",
        2201,
        "nvidia",
        "orin-agx-64gb",
    )
    assert orin.key == str(tmp_path / "keys/orin")  # relative to the inventory file
    assert orin.remote_tandem == "~/.tandem/venv/bin/tandem"
    nx = inv.board("nx1")
    assert (nx.port, nx.user, nx.agent, nx.remote_dir) == (22, None, False, "/opt/tandem")
    assert [b.name for b in inv.group("lab")] == ["orin1", "nx1"]
    assert inv.select(board="nx1") == [nx]


def test_ansible_ini(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, ANSIBLE_INI, "hosts"))
    assert sorted(inv.boards) == ["build1", "orin01", "orin02", "orin03", "xnx"]
    o2 = inv.board("orin02")
    assert (o2.host, o2.user, o2.target, o2.key) == (
        "orin02",
        "nvidia",
        "orin-agx-64gb",
        "/keys/jet",
    )
    xnx = inv.board("xnx")  # host vars beat group vars
    assert (xnx.host, xnx.port, xnx.target) == ("10.0.0.9", 2222, "xavier-nx")
    assert inv.groups["lab"] == ["orin01", "orin02", "orin03", "xnx"]
    assert inv.boards["build1"].port == 2200
    with pytest.raises(ConfigError, match=r"hosts:14: board 'build1' has no target"):
        inv.board("build1")  # a server in the same inventory is refused only when used


def test_ansible_yaml(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, ANSIBLE_YAML, "inv.yml"))
    assert {n: b.target for n, b in inv.boards.items()} == {
        "nx1": "orin-nx-16gb",
        "nx2": "orin-nx-16gb",
        "nx3": "xavier-agx",
    }
    nx3 = inv.board("nx3")
    assert (nx3.user, nx3.port, nx3.remote_dir) == ("ubuntu", 2200, "/srv/t")
    assert inv.groups["jetsons"] == ["nx1", "nx2", "nx3"]
    assert inv.groups["special"] == ["nx3"]


ERRORS = [
    # (file text, file name, expected "file:line: field: ..." fragment)
    ("boards:\n  a: {host: x, port: 99999, target: t}\n", "i.yaml", ":2: boards.a.port: expected"),
    ("boards:\n  a:\n    host: x\n    prot: 22\n    target: t\n", "i.yaml", ":4: boards.a.prot"),
    ("boards:\n  a: {host: x}\n", "i.yaml", ":2: boards.a.target: missing"),
    ("boards:\n  a: {target: t}\ngroups:\n  g: [a, b]\n", "i.yaml", ":4: groups.g[2]: unknown"),
    ("boards:\n  a: {target: t}\nfleet: {}\n", "i.yaml", ":3: fleet: unknown key"),
    ("boards:\n  a: {target: t, port: [1]}\n", "i.yaml", ":2: boards.a.port: expected a single"),
    ("boards:\n  a: {target: t}\n  a: {target: u}\n", "i.yaml", ":3: boards.a: given twice"),
    ("boards: [\n", "i.yaml", ": invalid YAML"),
    ("[jets]\nh1 ansible_port=abc tandem_target=t\n", "hosts", ":2: host h1: ansible_port"),
    ("[jets]\nh1 ansible_port\n", "hosts", ":2: host h1: expected key=value"),
    ("[jets:vars]\nnovalue\n", "hosts", ":2: [jets:vars]: expected key=value"),
    ("[jets:kids]\n", "hosts", ":1: bad section header"),
    ("[a:children]\nb\n[b:children]\na\n", "hosts", "form a cycle"),
    ("all:\n  hosts:\n    h1: {ansible_port: [2]}\n", "i.yml", ":3: all.hosts.h1.ansible_port"),
    ("all:\n  hostz: {}\n", "i.yml", ":2: all.hostz: unknown key"),
]


@pytest.mark.parametrize("text,name,fragment", ERRORS)
def test_errors_name_file_line_field(tmp_path: Path, text: str, name: str, fragment: str) -> None:
    path = write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert fragment in message, message


def test_unknown_board_and_group_suggest(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, TANDEM_YAML))
    with pytest.raises(ConfigError, match="no board named 'orin2'; did you mean 'orin1'"):
        inv.board("orin2")
    with pytest.raises(ConfigError, match="no group named 'zzz'; it has: lab"):
        inv.group("zzz")
    with pytest.raises(ConfigError, match="exactly one"):
        inv.select()


def test_missing_inventory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_inventory(tmp_path / "none.yaml")


@pytest.mark.parametrize(
    "pattern,hosts",
    [
        ("orin[1:3]", ["orin1", "orin2", "orin3"]),
        ("n[08:10].lab", ["n08.lab", "n09.lab", "n10.lab"]),
        ("x[a:c]", ["xa", "xb", "xc"]),
        ("y[0:6:3]", ["y0", "y3", "y6"]),
        ("plain", ["plain"]),
    ],
)
def test_host_ranges(pattern: str, hosts: list[str]) -> None:
    assert expand_host_pattern(pattern) == hosts
