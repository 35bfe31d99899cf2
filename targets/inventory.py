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
import ipaddress
import os
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from partitioner.errors import ConfigError
from partitioner.yaml_reader import (
    PathKey,
    YamlDoc,
    kind,
    lookup,
    parse_yaml,
    read_text,
    reject_unknown,
)

DEFAULT_REMOTE_DIR = "~/.tandem"
MAX_HOSTS = 10_000  # boards in one inventory; a host range is counted before it is expanded
MAX_GROUPS = 1_000  # groups in one inventory
MAX_GROUP_DEPTH = 32  # levels of children; real inventories use a handful
# Hosts summed over groups (a host counts once per group holding it, children included):
# resolving variables costs this much, however small the file.
MAX_MEMBERSHIPS = 500_000
MAX_INI_LINES = 50_000  # sections, hosts, vars, children; each is split as a shell would (slow)
_NAME = re.compile(r"^[A-Za-z0-9_.@-][A-Za-z0-9_.:@-]*$")
# RFC 1123 labels (plus "_", which /etc/hosts and many lab DNS servers accept).
_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")

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
_TANDEM_VARS = {v for names in ANSIBLE_VARS.values() for v in names}
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
    if not os.path.lexists(where):
        hint = " (pass --inventory or set TANDEM_INVENTORY)" if path is None else ""
        raise ConfigError(f"inventory {where} does not exist{hint}")
    return parse_inventory(read_text(where, "inventory"), where)


def parse_inventory(text: str, path: Path) -> Inventory:
    if _looks_like_ini(text):
        return _IniParser(text, path).parse()
    doc = parse_yaml(text, str(path))
    if doc.data is None:
        raise ConfigError(f"{path}:1: the inventory is empty; add `boards:` (see docs)")
    if not isinstance(doc.data, dict):
        raise doc.fail((), "an inventory is a mapping (`boards:`/`groups:`)")
    if "boards" in doc.data or "groups" in doc.data:
        return _TandemYaml(doc, path).parse()
    return _AnsibleYaml(doc, path).parse()


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


class _YamlWalker:
    """Walks an inventory read by the YAML reader; ``at`` is a path into the document."""

    def __init__(self, doc: YamlDoc, path: Path) -> None:
        self.doc = doc
        self.path = path

    def line(self, at: PathKey) -> int:
        return self.doc.line(at) or 1

    def mapping(self, at: PathKey) -> list[str]:
        """The keys of the mapping at ``at`` (none for an empty value)."""
        value = lookup(self.doc.data, at)
        if value is None:
            return []
        if not isinstance(value, dict):
            raise self.doc.error(at, "a mapping", value)
        return list(value)

    def single(self, at: PathKey) -> Any:
        value = lookup(self.doc.data, at)
        if isinstance(value, (dict, list)):
            raise self.doc.fail(at, "expected a single value")
        return value

    def name_list(self, at: PathKey) -> list[str]:
        names = lookup(self.doc.data, at)
        if not isinstance(names, list):
            raise self.doc.error(at, "a list of board names", names)
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise self.doc.error(at + (i,), "a board name", name)
        return names


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

    def where(at: int) -> str:  # line 0: the values came without lines (Ansible's vars)
        return f"{path}:{at}" if at else str(path)

    def err(field_: str, what: str) -> ConfigError:
        label = (labels or {}).get(field_, f"boards.{name}.{field_}")
        return ConfigError(f"{where(fields.get(field_, (None, line))[1])}: {label}: {what}")

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
        raise ConfigError(f"{where(line)}: board name {name!r}: use letters, digits, . _ - @ :")
    host = text("host", name)
    assert host is not None
    if not _is_host(host):
        raise err("host", f"expected a host name, IPv4 or IPv6 address, got {kind(host)}")
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
        source=where(line),
    )


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None


# --------------------------------------------------------------------------- Tandem YAML


class _TandemYaml(_YamlWalker):
    def parse(self) -> Inventory:
        inv = Inventory(self.path)
        reject_unknown(self.doc, (), ("boards", "groups"))
        if "boards" not in self.doc.data:
            raise self.doc.fail(("boards",), "missing; list the boards under `boards:`")
        boards = self.mapping(("boards",))
        if len(boards) > MAX_HOSTS:
            raise self.doc.fail(("boards",), f"more than {MAX_HOSTS} boards")
        for name in boards:
            at: PathKey = ("boards", name)
            fields: dict[str, tuple[Any, int]] = {}
            names = self.mapping(at)
            reject_unknown(self.doc, at, BOARD_FIELDS)
            for fname in names:
                fields[fname] = (self.single(at + (fname,)), self.line(at + (fname,)))
            if "target" not in fields:
                raise self.doc.fail(at + ("target",), "missing (e.g. orin-agx-64gb)")
            inv.boards[name] = _board(name, fields, self.path, self.line(at))
        for group in self.mapping(("groups",)) if "groups" in self.doc.data else []:
            at = ("groups", group)
            members = self.name_list(at)
            for i, member in enumerate(members):
                if member not in inv.boards:
                    raise self.doc.fail(
                        at + (i,), f"unknown board {member!r}{_hint(member, inv.boards)}"
                    )
            inv.groups[group] = members
        return inv


# --------------------------------------------------------------------------- Ansible


@dataclass
class _AnsibleGroup:
    line: int  # where the file first names the group
    vars: dict[str, tuple[Any, int]] = field(default_factory=dict)
    hosts: dict[str, None] = field(default_factory=dict)  # ordered set
    children: list[str] = field(default_factory=list)


class _AnsibleModel:
    """Groups, hosts and variables as Ansible reads them, resolved to boards at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.groups: dict[str, _AnsibleGroup] = {
            "all": _AnsibleGroup(1),
            "ungrouped": _AnsibleGroup(1),
        }
        self.host_vars: dict[str, dict[str, tuple[Any, int]]] = {}
        self.host_line: dict[str, int] = {}
        self.mentions = 0  # hosts named in groups, repeats included
        self.memberships = 0

    def group(self, name: str, line: int) -> _AnsibleGroup:
        if name not in self.groups and len(self.groups) >= MAX_GROUPS:
            raise ConfigError(f"{self.path}:{line}: group {name}: more than {MAX_GROUPS} groups")
        return self.groups.setdefault(name, _AnsibleGroup(line))

    def room(self) -> int:
        """How many hosts one more range may name (repeats cost work too)."""
        return max(0, min(MAX_HOSTS, MAX_MEMBERSHIPS - self.mentions))

    def add_host(
        self, group: str, host: str, variables: dict[str, tuple[Any, int]], line: int
    ) -> None:
        self.mentions += 1
        if host not in self.host_vars and len(self.host_vars) >= MAX_HOSTS:
            raise ConfigError(f"{self.path}:{line}: host {host}: more than {MAX_HOSTS} hosts")
        self.host_line.setdefault(host, line)
        self.host_vars.setdefault(host, {}).update(variables)
        self.group(group, line).hosts[host] = None

    def _resolve(
        self, group: str, done: dict[str, tuple[list[str], int]], stack: tuple[str, ...] = ()
    ) -> tuple[list[str], int]:
        """The hosts of ``group`` with its children's, and how many levels of children it has.

        Memoized, so a lattice of groups costs each group once; recursion stops at
        MAX_GROUP_DEPTH whichever group the walk starts from.
        """
        if group in done:
            return done[group]
        where = f"{self.path}:{self.groups[group].line}: group {group}"
        if group in stack:
            cycle = " -> ".join(stack[stack.index(group) :] + (group,))
            raise ConfigError(f"{where}: the groups' children form a cycle ({cycle})")
        if len(stack) > MAX_GROUP_DEPTH:
            raise ConfigError(f"{where}: children nested more than {MAX_GROUP_DEPTH} deep")
        hosts = dict(self.groups[group].hosts)
        height = 0
        for child in self.groups[group].children:
            if child not in self.groups:
                raise ConfigError(f"{where}: names unknown child {child!r}")
            child_hosts, child_height = self._resolve(child, done, stack + (group,))
            hosts.update(dict.fromkeys(child_hosts))
            height = max(height, child_height + 1)
            if height + len(stack) > MAX_GROUP_DEPTH:
                raise ConfigError(f"{where}: children nested more than {MAX_GROUP_DEPTH} deep")
        self.memberships += len(hosts)
        if self.memberships > MAX_MEMBERSHIPS:
            raise ConfigError(
                f"{where}: the groups hold more than {MAX_MEMBERSHIPS} hosts in all "
                "(a host counts once per group, children included)"
            )
        done[group] = (list(hosts), height)
        return done[group]

    def _depths(self) -> dict[str, int]:
        """Each group's longest distance from ``all`` (top-level groups: 1), for precedence:
        as in Ansible, a child group's variables override its parents'."""
        parents: dict[str, list[str]] = {}
        for name, g in self.groups.items():
            for child in g.children:
                parents.setdefault(child, []).append(name)
        depth: dict[str, int] = {"all": 0}

        def of(group: str) -> int:  # acyclic and at most MAX_GROUP_DEPTH deep: checked first
            if group not in depth:
                depth[group] = 1 + max((of(p) for p in parents.get(group, [])), default=0)
            return depth[group]

        for group in self.groups:
            of(group)
        return depth

    def to_inventory(self) -> Inventory:
        done: dict[str, tuple[list[str], int]] = {}
        groups = {g: self._resolve(g, done)[0] for g in self.groups}
        depth = self._depths()
        # Each host's groups that set variables, in precedence order (so no per-host sort);
        # hosts in the same groups share one merged mapping.
        setters: dict[str, list[str]] = {h: [] for h in self.host_vars}
        for gn in sorted(self.groups, key=lambda n: (depth[n], n)):
            if gn != "all" and self.groups[gn].vars:
                for h in groups[gn]:
                    setters[h].append(gn)
        merged: dict[tuple[str, ...], dict[str, tuple[Any, int]]] = {}
        inv = Inventory(self.path)
        for host in self.host_vars:
            key = tuple(setters[host])
            if key not in merged:
                merged[key] = dict(self.groups["all"].vars)
                for gn in key:
                    merged[key].update(self.groups[gn].vars)
            variables = {**merged[key], **self.host_vars[host]}
            inv.boards[host] = ansible_board(host, variables, self.path, self.host_line[host])
        all_hosts = list(self.host_vars)
        for gn, hosts in groups.items():
            inv.groups[gn] = all_hosts if gn == "all" else hosts
        if not inv.groups["ungrouped"]:
            del inv.groups["ungrouped"]
        return inv


def ansible_board(
    host: str, variables: dict[str, tuple[Any, int]], path: Path, line: int = 0
) -> Board:
    """The board an Ansible host's variables (``name -> (value, line)``) describe; also used
    by the tandem.jetson collection with the variables Ansible resolved (``line`` 0: none)."""
    fields: dict[str, tuple[Any, int]] = {}
    labels: dict[str, str] = {}
    for tandem_field, names in ANSIBLE_VARS.items():
        for var in names:
            if var in variables:
                fields[tandem_field] = variables[var]
                labels[tandem_field] = f"host {host}: {var}"
                break
    return _board(host, fields, path, line, labels)


_BLANKS = re.compile(r"[ \t\r\n]+")  # what shlex splits words on
_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]")


def expand_host_pattern(pattern: str, limit: int = MAX_HOSTS) -> list[str]:
    """Ansible's ``orin[01:03]`` / ``node[a:c]`` host ranges (one range per pattern).

    The range is counted before it is expanded: ``orin[0:9999999999]`` is refused at once.
    """
    m = _RANGE.search(pattern)
    if m is None:
        return [pattern]
    start, end, step_text = m.group(1), m.group(2), m.group(3)
    if start.isdigit() != end.isdigit() or max(len(start), len(end), len(step_text or "")) > 18:
        raise ValueError(f"bad host range {m.group(0)}")
    step = int(step_text) if step_text else 1
    first, last = (int(start), int(end)) if start.isdigit() else (ord(start), ord(end))
    count = (last - first) // step + 1 if step >= 1 and last >= first else 0
    if not 1 <= count <= limit:
        raise ValueError(f"host range {m.group(0)} yields {count} hosts; expected 1 to {limit}")
    width = len(start) if start.isdigit() and start.startswith("0") else 0
    values = (
        str(i).zfill(width) if start.isdigit() else chr(i) for i in range(first, last + 1, step)
    )
    return [pattern[: m.start()] + v + pattern[m.end() :] for v in values]


class _IniParser:
    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        self.model = _AnsibleModel(path)

    def error(self, line: int, what: str) -> ConfigError:
        return ConfigError(f"{self.path}:{line}: {what}")

    def parse(self) -> Inventory:
        section, part = "ungrouped", "hosts"
        entries = 0
        for number, raw in enumerate(self.text.splitlines(), start=1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            entries += 1
            if entries > MAX_INI_LINES:
                raise self.error(number, f"more than {MAX_INI_LINES} lines besides comments")
            if line.startswith("["):
                m = re.fullmatch(r"\[([^\[\]:\s]+)(?::(vars|children))?\]", line)
                if m is None:
                    raise self.error(number, f"bad section header {line!r}; use [group], "
                                     "[group:vars] or [group:children]")  # fmt: skip
                section, part = m.group(1), m.group(2) or "hosts"
                self.model.group(section, number)
            elif part == "vars":
                name, sep, value = line.partition("=")
                if not sep or not name.strip():
                    raise self.error(number, f"[{section}:vars]: expected key=value, got {line!r}")
                group = self.model.group(section, number)
                group.vars[name.strip()] = (self._value(value, number), number)
            elif part == "children":
                child = line.split()[0]
                if child not in self.model.group(section, number).children:
                    self.model.group(section, number).children.append(child)
                self.model.group(child, number)
            else:
                self._host_line(section, line, number)
        return self.model.to_inventory()

    def _words(self, text: str, number: int) -> list[str]:
        """``text`` split as a shell would (quotes, escapes, ``#`` comments)."""
        if not any(c in text for c in "'\"\\#"):  # the common case, without shlex's cost
            return _BLANKS.split(text.strip(" \t\r\n")) if text.strip(" \t\r\n") else []
        try:
            return shlex.split(text, comments=True)
        except ValueError as err:
            raise self.error(number, f"unreadable text {kind(text.strip())} ({err})") from None

    def _value(self, text: str, number: int) -> str:
        return " ".join(self._words(text, number))

    def _host_line(self, section: str, line: str, number: int) -> None:
        words = self._words(line, number)
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
            hosts = expand_host_pattern(pattern, self.model.room())
        except ValueError as err:
            raise self.error(number, f"host {pattern}: {err}") from None
        for host in hosts:
            self.model.add_host(section, host, dict(variables), number)


class _AnsibleYaml(_YamlWalker):
    def __init__(self, doc: YamlDoc, path: Path) -> None:
        super().__init__(doc, path)
        self.model = _AnsibleModel(path)

    def parse(self) -> Inventory:
        for name in self.mapping(()):
            self._group(name, (name,))
        return self.model.to_inventory()

    def _group(self, name: str, at: PathKey) -> None:
        """One group; its children recurse here, as deep as the YAML reader lets them nest."""
        group = self.model.group(name, self.line(at))
        keys = self.mapping(at)
        reject_unknown(self.doc, at, ("hosts", "vars", "children"))
        for key in keys:
            if key == "hosts":
                for host in self.mapping(at + (key,)):
                    where = at + (key, host)
                    try:
                        expanded = expand_host_pattern(host, self.model.room())
                    except ValueError as err:
                        raise self.doc.fail(where, str(err)) from None
                    variables = self._vars(where)
                    for h in expanded:
                        self.model.add_host(name, h, variables, self.line(where))
            elif key == "vars":
                group.vars.update(self._vars(at + (key,)))
            else:
                for child in self.mapping(at + (key,)):
                    if child not in group.children:
                        group.children.append(child)
                    self._group(child, at + (key, child))

    def _vars(self, at: PathKey) -> dict[str, tuple[Any, int]]:
        out = {}
        for var in self.mapping(at):
            value = lookup(self.doc.data, at + (var,))
            if isinstance(value, (dict, list)):
                if var in _TANDEM_VARS:
                    raise self.doc.fail(at + (var,), "expected a single value")
                value = None  # structured vars are Ansible's business, not ours
            out[var] = (value, self.line(at + (var,)))
        return out


def with_overrides(board: Board, **changes: Any) -> Board:
    """A copy of ``board`` with some fields changed (tests, CLI flags)."""
    return replace(board, **changes)
