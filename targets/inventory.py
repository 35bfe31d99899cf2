"""Board inventory: Tandem's own YAML, or an Ansible inventory (INI or YAML flavour).

Tandem YAML::

    boards:
      orin1: {host: 10.0.0.5, port: 22, user: nvidia, key: ~/.ssh/jetson, target: orin-agx-64gb}
    groups:
      lab: [orin1]

Ansible: ``ansible_host``, ``ansible_port``, ``ansible_user``, ``ansible_ssh_private_key_file``
and a ``tandem_target`` variable (host or group vars); groups, ``:vars`` and ``:children`` as
Ansible has them. Hosts without ``tandem_target`` may sit in an Ansible inventory (servers, ...);
they are refused only when named for a Tandem operation.

Every validation error names the file, the line and the field.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from partitioner.errors import ConfigError

DEFAULT_REMOTE_DIR = "~/.tandem"
_NAME = re.compile(r"^[A-Za-z0-9_.@-][A-Za-z0-9_.:@-]*$")
_MAX_NODES = 200_000  # YAML aliases can make a small file a huge tree

# Tandem field -> its Ansible variable names (first wins).
ANSIBLE_VARS: dict[str, tuple[str, ...]] = {
    "host": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "key": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "target": ("tandem_target",),
    "remote_dir": ("tandem_remote_dir",),
    "tandem": ("tandem_bin",),
    "python": ("ansible_python_interpreter", "tandem_python"),
}
BOARD_FIELDS = (
    "host", "port", "user", "key", "target", "remote_dir", "tandem", "python", "known_hosts",
    "agent",
)  # fmt: skip


@dataclass(frozen=True)
class Board:
    """One board as the deploy tools see it. ``source`` is ``file:line`` for messages."""

    name: str
    host: str
    target: str | None
    port: int = 22
    user: str | None = None
    key: str | None = None
    remote_dir: str = DEFAULT_REMOTE_DIR
    tandem: str | None = None  # the remote ``tandem``; default: the venv ``board setup`` makes
    python: str = "python3"  # the remote interpreter ``board setup`` makes the venv with
    known_hosts: str | None = None  # local known_hosts file; default ~/.ssh/known_hosts
    agent: bool = True  # try the SSH agent
    source: str = ""

    @property
    def remote_tandem(self) -> str:
        return self.tandem or f"{self.remote_dir.rstrip('/')}/venv/bin/tandem"

    def with_target(self) -> Board:
        """This board, refusing it when it has no target (Ansible hosts may lack one)."""
        if not self.target:
            raise ConfigError(
                f"{self.source}: board {self.name!r} has no target; add `tandem_target: T` "
                "(Ansible) or `target: T` (Tandem inventory), T from `targets/`"
            )
        return self


@dataclass
class Inventory:
    path: Path
    boards: dict[str, Board] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def board(self, name: str) -> Board:
        if name not in self.boards:
            raise ConfigError(f"{self.path}: no board named {name!r}{_hint(name, self.boards)}")
        return self.boards[name].with_target()

    def group(self, name: str) -> list[Board]:
        if name not in self.groups:
            raise ConfigError(f"{self.path}: no group named {name!r}{_hint(name, self.groups)}")
        return [self.board(b) for b in self.groups[name]]

    def select(self, board: str | None = None, group: str | None = None) -> list[Board]:
        if (board is None) == (group is None):
            raise ConfigError("name exactly one of a board or a group")
        return [self.board(board)] if board is not None else self.group(str(group))


def _hint(name: str, known: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; it has: {', '.join(sorted(known)) or 'none'}"


def default_inventory_path() -> Path:
    env = os.environ.get("TANDEM_INVENTORY")
    if env:
        return Path(env)
    return Path(os.path.expanduser("~/.config/tandem/inventory.yaml"))


def load_inventory(path: str | os.PathLike[str] | None = None) -> Inventory:
    """Read an inventory, detecting its flavour (Tandem YAML, Ansible YAML, Ansible INI)."""
    where = Path(path) if path is not None else default_inventory_path()
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = " (pass --inventory or set TANDEM_INVENTORY)" if path is None else ""
        raise ConfigError(f"inventory {where} does not exist{hint}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"cannot read inventory {where}: {err.strerror or err}") from None
    return parse_inventory(text, where)


def parse_inventory(text: str, path: Path) -> Inventory:
    if _looks_like_ini(text):
        return _IniParser(text, path).parse()
    root = _compose(text, path)
    if root is None:
        raise ConfigError(f"{path}:1: the inventory is empty; add `boards:` (see docs)")
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}:{_line(root)}: an inventory is a mapping (`boards:`/`groups:`)")
    keys = {_scalar_text(k): k for k, _ in root.value}
    if "boards" in keys or "groups" in keys:
        return _TandemYaml(path).parse(root)
    return _AnsibleYaml(path).parse(root)


def _looks_like_ini(text: str) -> bool:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or line == "---":
            continue
        # A YAML flow list would also start with "[", but is never a bare "[name]" line.
        if re.fullmatch(r"\[[^\[\]\s]+\]", line):
            return True
        return bool(re.fullmatch(r"[^\s:=\[\]{}]+(\s+\S+=\S*)*", line)) and ":" not in line
    return False


# --------------------------------------------------------------------------- YAML helpers


def _compose(text: str, path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{path}:{line}: invalid YAML: {err.problem or err.context}") from None
    except (yaml.YAMLError, RecursionError, ValueError) as err:
        raise ConfigError(f"{path}: invalid YAML ({type(err).__name__})") from None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar_text(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


class _YamlReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.nodes = 0
        self._loader = yaml.SafeLoader("")

    def error(self, node: yaml.Node, field_: str, what: str) -> ConfigError:
        return ConfigError(f"{self.path}:{_line(node)}: {field_}: {what}")

    def value(self, node: yaml.Node, field_: str) -> Any:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise self.error(node, field_, "the inventory is too large (alias expansion?)")
        if isinstance(node, yaml.ScalarNode):
            try:
                return self._loader.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, OverflowError) as err:
                raise self.error(node, field_, f"unreadable value ({err})") from None
        return node

    def mapping(self, node: yaml.Node, field_: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if isinstance(node, yaml.ScalarNode) and self.value(node, field_) is None:
            return []
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, field_, f"expected a mapping, got {_kind(node)}")
        out = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = self.value(key_node, field_)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise self.error(key_node, field_, f"keys must be names, got {_kind(key_node)}")
            key = str(key)
            if key in seen:
                raise self.error(key_node, f"{field_}.{key}", "appears twice")
            seen.add(key)
            out.append((key, key_node, value_node))
        return out

    def name_list(self, node: yaml.Node, field_: str) -> list[tuple[str, yaml.Node]]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, field_, f"expected a list of board names, got {_kind(node)}")
        out = []
        for item in node.value:
            name = self.value(item, field_)
            if not isinstance(name, str):
                raise self.error(item, field_, f"expected a board name, got {_kind(item)}")
            out.append((name, item))
        return out


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{node.value!r}" if isinstance(node, yaml.ScalarNode) else type(node).__name__


def _board(
    name: str,
    fields: dict[str, tuple[Any, int]],
    path: Path,
    line: int,
    labels: dict[str, str] | None = None,
) -> Board:
    """Validate one board's fields; ``fields`` maps Tandem field -> (value, line).

    ``labels`` names each field as the file spells it (``boards.orin1.port``, ``ansible_port``).
    """

    def err(field_: str, what: str) -> ConfigError:
        label = (labels or {}).get(field_, f"boards.{name}.{field_}")
        return ConfigError(f"{path}:{fields.get(field_, (None, line))[1]}: {label}: {what}")

    def text(field_: str, default: str | None = None) -> str | None:
        if field_ not in fields or fields[field_][0] is None:
            return default
        value = fields[field_][0]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise err(field_, f"expected text, got {value!r}")
        value = str(value)
        if not value.strip() or "\n" in value or "\0" in value:
            raise err(field_, f"expected a non-empty single-line value, got {value!r}")
        return value

    if not _NAME.match(name):
        raise ConfigError(f"{path}:{line}: board name {name!r}: use letters, digits, . _ - @ :")
    host = text("host", name)
    assert host is not None
    if host.startswith("-") or any(c.isspace() for c in host):
        raise err("host", f"{host!r} is not a host name or address")
    port_value = fields.get("port", (22, line))[0]
    try:
        if isinstance(port_value, bool) or isinstance(port_value, float):
            raise ValueError
        port = int(str(port_value).strip())
    except ValueError:
        raise err("port", f"expected an integer 1-65535, got {port_value!r}") from None
    if not 1 <= port <= 65535:
        raise err("port", f"expected an integer 1-65535, got {port}")
    key = text("key")
    if key is not None:
        expanded = Path(os.path.expanduser(key))
        key = str(expanded if expanded.is_absolute() else path.parent / expanded)
    known_hosts = text("known_hosts")
    if known_hosts is not None:
        expanded = Path(os.path.expanduser(known_hosts))
        known_hosts = str(expanded if expanded.is_absolute() else path.parent / expanded)
    agent = fields.get("agent", (True, line))[0]
    if isinstance(agent, str) and agent.lower() in ("true", "yes", "false", "no"):
        agent = agent.lower() in ("true", "yes")
    if not isinstance(agent, bool):
        raise err("agent", f"expected true or false, got {agent!r}")
    return Board(
        name=name,
        host=host,
        target=text("target"),
        port=port,
        user=text("user"),
        key=key,
        remote_dir=text("remote_dir", DEFAULT_REMOTE_DIR) or DEFAULT_REMOTE_DIR,
        tandem=text("tandem"),
        python=text("python", "python3") or "python3",
        known_hosts=known_hosts,
        agent=agent,
        source=f"{path}:{line}",
    )


# --------------------------------------------------------------------------- Tandem YAML


class _TandemYaml(_YamlReader):
    def parse(self, root: yaml.MappingNode) -> Inventory:
        inv = Inventory(self.path)
        sections = dict((k, (kn, vn)) for k, kn, vn in self.mapping(root, "inventory"))
        for key, (key_node, _) in sections.items():
            if key not in ("boards", "groups"):
                raise self.error(key_node, key, "unknown section; an inventory has boards, groups")
        if "boards" not in sections:
            raise self.error(root, "boards", "missing; list the boards under `boards:`")
        for name, key_node, node in self.mapping(sections["boards"][1], "boards"):
            fields: dict[str, tuple[Any, int]] = {}
            for fname, fkey, fvalue in self.mapping(node, f"boards.{name}"):
                if fname not in BOARD_FIELDS:
                    close = difflib.get_close_matches(fname, BOARD_FIELDS, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise self.error(fkey, f"boards.{name}.{fname}", f"unknown field{hint}")
                value = self.value(fvalue, f"boards.{name}.{fname}")
                if isinstance(value, yaml.Node):
                    raise self.error(fvalue, f"boards.{name}.{fname}", "expected a single value")
                fields[fname] = (value, _line(fvalue))
            if "target" not in fields:
                raise self.error(node, f"boards.{name}.target", "missing (e.g. orin-agx-64gb)")
            inv.boards[name] = _board(name, fields, self.path, _line(key_node))
        if "groups" in sections:
            for group, _, node in self.mapping(sections["groups"][1], "groups"):
                members = []
                for member, member_node in self.name_list(node, f"groups.{group}"):
                    if member not in inv.boards:
                        raise self.error(
                            member_node,
                            f"groups.{group}",
                            f"unknown board {member!r}{_hint(member, inv.boards)}",
                        )
                    members.append(member)
                inv.groups[group] = members
        return inv


# --------------------------------------------------------------------------- Ansible


@dataclass
class _AnsibleGroup:
    vars: dict[str, tuple[Any, int]] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


class _AnsibleModel:
    """Groups, hosts and variables as Ansible reads them, resolved to boards at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.groups: dict[str, _AnsibleGroup] = {
            "all": _AnsibleGroup(),
            "ungrouped": _AnsibleGroup(),
        }
        self.host_vars: dict[str, dict[str, tuple[Any, int]]] = {}
        self.host_line: dict[str, int] = {}

    def group(self, name: str) -> _AnsibleGroup:
        return self.groups.setdefault(name, _AnsibleGroup())

    def add_host(
        self, group: str, host: str, variables: dict[str, tuple[Any, int]], line: int
    ) -> None:
        self.host_line.setdefault(host, line)
        self.host_vars.setdefault(host, {}).update(variables)
        if host not in self.group(group).hosts:
            self.group(group).hosts.append(host)

    def _depths(self) -> dict[str, int]:
        depth = {"all": 0}
        frontier = ["all"] + [g for g in self.groups if g != "all"]
        for _ in range(len(self.groups) + 1):  # longest path, bounded (cycles are refused below)
            changed = False
            for g in frontier:
                for child in self.groups[g].children:
                    if depth.get(child, -1) < depth.get(g, 0) + 1:
                        depth[child] = depth.get(g, 0) + 1
                        changed = True
            if not changed:
                return depth
        raise ConfigError(f"{self.path}: the groups' children form a cycle")

    def members(self, group: str, seen: frozenset[str] = frozenset()) -> list[str]:
        if group in seen:
            raise ConfigError(f"{self.path}: group {group!r} contains itself through :children")
        out = list(self.groups[group].hosts)
        for child in self.groups[group].children:
            out += [h for h in self.members(child, seen | {group}) if h not in out]
        return out

    def to_inventory(self) -> Inventory:
        for name, g in self.groups.items():
            for child in g.children:
                if child not in self.groups:
                    raise ConfigError(f"{self.path}: group {name!r} names unknown child {child!r}")
        depth = self._depths()
        inv = Inventory(self.path)
        groups = {g: self.members(g) for g in self.groups}
        for host in self.host_vars:
            variables: dict[str, tuple[Any, int]] = {}
            mine = [gn for gn, hosts in groups.items() if host in hosts and gn != "all"]
            for gn in ["all"] + sorted(mine, key=lambda n: (depth.get(n, 1), n)):
                variables.update(self.groups[gn].vars)
            variables.update(self.host_vars[host])
            fields: dict[str, tuple[Any, int]] = {}
            labels: dict[str, str] = {}
            for tandem_field, names in ANSIBLE_VARS.items():
                for var in names:
                    if var in variables:
                        fields[tandem_field] = variables[var]
                        labels[tandem_field] = f"host {host}: {var}"
                        break
            inv.boards[host] = _board(host, fields, self.path, self.host_line[host], labels)
        all_hosts = list(self.host_vars)
        for gn, hosts in groups.items():
            inv.groups[gn] = all_hosts if gn == "all" else hosts
        if not inv.groups["ungrouped"]:
            del inv.groups["ungrouped"]
        return inv


_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]")


def expand_host_pattern(pattern: str) -> list[str]:
    """Ansible's ``orin[01:03]`` / ``node[a:c]`` host ranges (one range per pattern)."""
    m = _RANGE.search(pattern)
    if m is None:
        return [pattern]
    start, end, step_text = m.group(1), m.group(2), m.group(3)
    step = int(step_text) if step_text else 1
    if step < 1 or start.isdigit() != end.isdigit():
        raise ValueError(f"bad host range {m.group(0)}")
    if start.isdigit():
        width = len(start) if start.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    else:
        values = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    if not values or len(values) > 10_000:
        raise ValueError(f"host range {m.group(0)} yields {len(values)} hosts")
    return [pattern[: m.start()] + v + pattern[m.end() :] for v in values]


class _IniParser:
    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        self.model = _AnsibleModel(path)

    def error(self, line: int, what: str) -> ConfigError:
        return ConfigError(f"{self.path}:{line}: {what}")

    def parse(self) -> Inventory:
        section, kind = "ungrouped", "hosts"
        for number, raw in enumerate(self.text.splitlines(), start=1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                m = re.fullmatch(r"\[([^\[\]:\s]+)(?::(vars|children))?\]", line)
                if m is None:
                    raise self.error(number, f"bad section header {line!r}; use [group], "
                                     "[group:vars] or [group:children]")  # fmt: skip
                section, kind = m.group(1), m.group(2) or "hosts"
                self.model.group(section)
            elif kind == "vars":
                name, sep, value = line.partition("=")
                if not sep or not name.strip():
                    raise self.error(number, f"[{section}:vars]: expected key=value, got {line!r}")
                self.model.group(section).vars[name.strip()] = (self._value(value, number), number)
            elif kind == "children":
                child = line.split()[0]
                if child not in self.model.group(section).children:
                    self.model.group(section).children.append(child)
                self.model.group(child)
            else:
                self._host_line(section, line, number)
        return self.model.to_inventory()

    def _value(self, text: str, number: int) -> str:
        try:
            parts = shlex.split(text, comments=True)
        except ValueError as err:
            raise self.error(number, f"unreadable value {text.strip()!r} ({err})") from None
        return " ".join(parts)

    def _host_line(self, section: str, line: str, number: int) -> None:
        try:
            words = shlex.split(line, comments=True)
        except ValueError as err:
            raise self.error(number, f"unreadable host line ({err})") from None
        if not words:
            return
        pattern, variables = words[0], {}
        for word in words[1:]:
            name, sep, value = word.partition("=")
            if not sep or not name:
                raise self.error(number, f"host {pattern}: expected key=value, got {word!r}")
            variables[name] = (value, number)
        if pattern.count(":") == 1 and "]" not in pattern.split(":")[1]:
            pattern, port = pattern.split(":")
            variables.setdefault("ansible_port", (port, number))
        try:
            hosts = expand_host_pattern(pattern)
        except ValueError as err:
            raise self.error(number, f"host {pattern}: {err}") from None
        for host in hosts:
            self.model.add_host(section, host, dict(variables), number)


class _AnsibleYaml(_YamlReader):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.model = _AnsibleModel(path)

    def parse(self, root: yaml.MappingNode) -> Inventory:
        for name, _, node in self.mapping(root, "inventory"):
            self._group(name, node, name, 0)
        return self.model.to_inventory()

    def _group(self, name: str, node: yaml.Node, field_: str, depth: int) -> None:
        if depth > 64:
            raise self.error(node, field_, "groups nested more than 64 deep")
        group = self.model.group(name)
        for key, key_node, value in self.mapping(node, field_):
            where = f"{field_}.{key}"
            if key == "hosts":
                for host, host_key, host_node in self.mapping(value, where):
                    try:
                        expanded = expand_host_pattern(host)
                    except ValueError as err:
                        raise self.error(host_key, f"{where}.{host}", str(err)) from None
                    variables = self._vars(host_node, f"{where}.{host}")
                    for h in expanded:
                        self.model.add_host(name, h, variables, _line(host_key))
            elif key == "vars":
                group.vars.update(self._vars(value, where))
            elif key == "children":
                for child, _, child_node in self.mapping(value, where):
                    if child not in group.children:
                        group.children.append(child)
                    self._group(child, child_node, f"{where}.{child}", depth + 1)
            else:
                raise self.error(key_node, where, "unknown key; a group has hosts, vars, children")

    def _vars(self, node: yaml.Node, field_: str) -> dict[str, tuple[Any, int]]:
        out = {}
        for var, _, value_node in self.mapping(node, field_):
            value = self.value(value_node, f"{field_}.{var}")
            if isinstance(value, yaml.Node):
                if var in {v for names in ANSIBLE_VARS.values() for v in names}:
                    raise self.error(value_node, f"{field_}.{var}", "expected a single value")
                value = None  # structured vars are Ansible's business, not ours
            out[var] = (value, _line(value_node))
        return out


def with_overrides(board: Board, **changes: Any) -> Board:
    """A copy of ``board`` with some fields changed (tests, CLI flags)."""
    return replace(board, **changes)
