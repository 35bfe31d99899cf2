"""Mutations of the YAML (and Ansible INI) files users write: policies, targets, inventories.

Each mutation is ``op(rng, text) -> (name, bytes)``. The generic ones attack the YAML layer every
reader shares (type tags, nesting, alias bombs, encodings, surrogates, sizes); the per-kind ones
put hostile values into the fields that kind's reader interprets (policy regexes, target numbers,
inventory host ranges and group chains). Payloads that would run code try to create ``CANARY``
in the case folder, which the harness checks.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

Mutation = Callable[[random.Random, str], tuple[str, bytes]]

# A ``key: value`` (YAML block or flow) or ``key=value`` (INI) pair; group 2 is the value.
_FIELD = r"(?m)(\b{key}\b[ \t]*[:=][ \t]*)([^\s,}}\]\n]*)"
_ANY_FIELD = re.compile(r"(?m)(\b[A-Za-z_]\w*\b[ \t]*[:=][ \t]*)([^\s,}\]\n#]+)")

TAGS = [
    "!!int abc", "!!float x", "!!bool maybe", "!!binary ZZZ=", "!!timestamp 2026-13-45",
    "!!set {a, b}", "!!omap [a]", "!!null x", "!!map [1]", "!!seq {a: 1}", "!custom x",
    "!!python/object/apply:os.system ['touch CANARY']", "!!python/name:os.system",
    "!!python/object/new:type ['x', [], {}]", "!<tag:yaml.org,2002:int> 12x",
]  # fmt: skip
SCALARS = [
    "-1", "0", "1e308", ".inf", "-.inf", ".nan", "99999999999999999999999999", "0x7fffffffffffffff",
    "-9223372036854775809", "1_000", "0o777", "1e1000", "-0", "~", "null", "yes", "''", "[]", "{}",
    '"\\ud800"', '"\\udfff\\ud800"', '"\\U0010ffff"', '"\\x00"', '"\\u202e"', '"a\\nb"',
    "x" * 5000,
]  # fmt: skip
# Characters that matter to YAML and INI syntax, so splices hit the parsers' edges.
SYNTAX = list(":[]{},-=#&*!|>'\"%@`\n \t\\?") + ["0x", "~", "null", "yes", "1e9", "<<: *a"]


def _replace_value(rng: random.Random, text: str, key: str | None, value: str) -> str:
    pattern = _ANY_FIELD if key is None else re.compile(_FIELD.format(key=re.escape(key)))
    hits = list(pattern.finditer(text))
    if not hits:
        return text + f"\n{key or 'x'}: {value}\n"
    m = rng.choice(hits)
    return text[: m.start(2)] + value + text[m.end(2) :]


def type_tag(rng: random.Random, text: str) -> tuple[str, bytes]:
    return "type-tag", _replace_value(rng, text, None, rng.choice(TAGS)).encode()


def hostile_scalar(rng: random.Random, text: str) -> tuple[str, bytes]:
    return "scalar", _replace_value(rng, text, None, rng.choice(SCALARS)).encode()


def deep_nesting(rng: random.Random, text: str) -> tuple[str, bytes]:
    depth = rng.choice([200, 3000, 100_000])
    value = rng.choice(["[" * depth + "]" * depth, "{a: " * depth + "1" + "}" * depth])
    return f"nesting-{depth}", _replace_value(rng, text, None, value).encode()


def alias_bomb(rng: random.Random, text: str) -> tuple[str, bytes]:
    """Billion laughs: nine levels of ten aliases each expand to 10**9 scalars."""
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        levels.append(f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]")
    # Anchors first, then the document with one of its values replaced by the largest alias.
    head = "\n".join(levels) + "\n"
    return "billion-laughs", (head + _replace_value(rng, text, None, "*a8")).encode()


def encoding(rng: random.Random, text: str) -> tuple[str, bytes]:
    accented = _replace_value(rng, text, None, "caf\u00e9")
    which = rng.choice(["latin-1", "utf-16", "utf-16-be", "utf-32", "bad-utf8", "nul", "bom"])
    if which == "bad-utf8":
        data = accented.encode()
        cut = rng.randrange(len(data) + 1)
        return "encoding-bad-utf8", data[:cut] + b"\xff\xfe\xc3" + data[cut:]
    if which == "nul":
        return "encoding-nul", accented.encode().replace(b"\n", b"\n\0", 1)
    if which == "bom":
        return "encoding-utf8-bom", b"\xef\xbb\xbf" + accented.encode()
    return f"encoding-{which}", accented.encode(which)


def splice(rng: random.Random, text: str) -> tuple[str, bytes]:
    """A few syntax characters inserted or overwritten (the shape of the existing hypothesis
    fuzzers of the loaders, here through the CLI)."""
    for _ in range(rng.randint(1, 6)):
        pos = rng.randrange(len(text) + 1)
        text = text[:pos] + rng.choice(SYNTAX) + text[pos + rng.randint(0, 2) :]
    return "splice", text.encode()


def lines(rng: random.Random, text: str) -> tuple[str, bytes]:
    rows = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(rows))
        if rng.random() < 0.5 and len(rows) > 1:
            del rows[i]
        else:
            rows.insert(i, rows[i])
    return "lines", "\n".join(rows).encode()


def huge(rng: random.Random, text: str) -> tuple[str, bytes]:
    """A document of a few MB: a reader must refuse it by size, not parse it for minutes."""
    mb = rng.choice([4, 16])
    value = "[" + ", ".join(["1"] * (mb << 18)) + "]"
    return f"huge-{mb}mb", _replace_value(rng, text, None, value).encode()


# ----- policies --------------------------------------------------------------------------------
REGEXES = [
    "(.*)*x$", "(a|aa)+$", "(\\w+\\.?)*!$", "^(([a-z0-9])+.)+[A-Z]$", "a{99999999999}",
    ".{1000000}", "(", "[z-a]", "(?<=a+)b", "\\", "(?P<n>a)(?P=n)", "x" * 100_000,
    "(" * 500 + ")" * 500, "\\ud800", "[\\d-z]", "(?i)(?m)(?s)(?x)#",
]  # fmt: skip
GLOBS = ["[!", "*" * 5000 + "x", "[]]", "\\", "**/*", "[\\ud800]", "?" * 100_000]


def policy_pattern(rng: random.Random, text: str) -> tuple[str, bytes]:
    key, pattern = rng.choice([("regex", rng.choice(REGEXES)), ("name", rng.choice(GLOBS))])
    quoted = '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if "\\ud800" in pattern:
        quoted = '"' + pattern + '"'  # the YAML escape itself: a lone surrogate in the value
    rule = f"  - {key}: {quoted}\n    device: gpu\n"
    return f"policy-{key}", text.replace("rules:\n", "rules:\n" + rule, 1).encode()


def policy_value(rng: random.Random, text: str) -> tuple[str, bytes]:
    key, values = rng.choice(
        [
            ("dla_core", ["2", "-1", "1e100", "x", "true", "[0]"]),
            ("range", ["[5, 2]", "[-1, 1e18]", "[0]", "[0, 1, 2]", "[a, b]", "[99999999999, 0]"]),
            ("precision", ["int4", "FP16", "''", "[fp16]"]),
            ("device", ["dla7", "cpu", "gpu0", "''"]),
            ("max_dla_subgraphs", ["0", "-5", "99999999999999999999", "1.5"]),
            ("min_dla_segment_layers", ["0", "2e9", "-1"]),
            ("op", ["[]", "[[Conv]]", "{a: b}", '"\\ud800"']),
        ]
    )
    return f"policy-{key}", _replace_value(rng, text, key, rng.choice(values)).encode()


def policy_many_rules(rng: random.Random, text: str) -> tuple[str, bytes]:
    n = rng.choice([10_000, 100_000])
    rules = "".join(f"  - name: 'l{i}*'\n    device: gpu\n" for i in range(n))
    return f"policy-{n}-rules", text.replace("rules:\n", "rules:\n" + rules, 1).encode()


# Each kind's list is in the order a campaign takes it: issue 16's classes first, so that a short
# run (CI's) meets each of them.
POLICY: list[Mutation] = [
    type_tag, policy_pattern, encoding, hostile_scalar, policy_pattern, alias_bomb, deep_nesting,
    splice, lines, huge, policy_value, policy_many_rules,
]  # fmt: skip

# ----- targets ---------------------------------------------------------------------------------
TARGET_VALUES = {
    "sms": ["0", "-1", "1e308", ".nan", "!!int x", "99999999999999999999"],
    "gpu_sms": ["0", "-4", "1000"],
    "cuda_cores": ["0", "-1", ".inf"],
    "l2_kib": ["-1", "1e30"],
    "version": ["0", "3", "-1", "x"],
    "cores": ["0", "99", "-1", "2.5"],
    "bus_bits": ["0", "-128", ".nan"],
    "gpu_mhz": ["0", "-918", ".inf", ".nan", "1e308"],
    "dla_mhz": ["0", "-1", ".nan"],
    "emc_mhz": ["0", "-1", "1e-300"],
    "arch": ["sm_999", "''", "sm_x", "sm_87; rm -rf /", "compute_87"],
    "name": ["../../../tmp/x", "''", '"\\ud800"', "MAXN"],
    "cuda": ["'99.9'", "x", "1", "'12.6.9.9.9'"],
    "jetpack": ["x", "'0'", "[6]"],
    "power_modes": ["[]", "{}", "x", "[[]]"],
}


def target_value(rng: random.Random, text: str) -> tuple[str, bytes]:
    key = rng.choice(sorted(TARGET_VALUES))
    value = rng.choice(TARGET_VALUES[key])
    return f"target-{key}", _replace_value(rng, text, key, value).encode()


def target_many_modes(rng: random.Random, text: str) -> tuple[str, bytes]:
    n = rng.choice([2, 50_000])
    mode = "  - name: MAXN\n    gpu_mhz: 918\n    dla_mhz: 614.4\n    emc_mhz: 3199\n"
    out = text.replace("power_modes:\n", "power_modes:\n" + mode * n, 1)
    return f"target-{n}-modes", out.encode()


TARGET: list[Mutation] = [
    type_tag, encoding, alias_bomb, target_value, hostile_scalar, deep_nesting, splice, lines, huge,
    target_value, target_many_modes,
]  # fmt: skip

# ----- inventories (Tandem YAML, Ansible INI, Ansible YAML) -------------------------------------
HOSTS = [
    "../../etc", "a" * 64 + ".lab", "xn--", "\u00e9.lab", "''", "'[::1]'", "-", "a..b", "'a b'",
    "'$(touch CANARY)'", "'`touch CANARY`'", "';touch CANARY'", "'\\x00'", "1.2.3.4.5",
]  # fmt: skip
PORTS = ["0", "-1", "65536", "1e9", "x", "99999999999999999999", "''"]
KEYS = ["/dev/zero", "/etc", "''", "~nosuchuser/k", "/proc/self/mem", "keys/orin/../../../x"]
DIRS = ["'C:\\tandem'", "'a\\\\b'", "'$(touch CANARY)'", "'/tmp/x;touch CANARY'", "''", "'~'"]


def _is_ini(text: str) -> bool:
    return "[jetsons]" in text  # the Ansible INI seed's first group


def inventory_value(rng: random.Random, text: str) -> tuple[str, bytes]:
    keys = {
        "host": HOSTS, "ansible_host": HOSTS, "port": PORTS, "ansible_port": PORTS,
        "key": KEYS, "ansible_ssh_private_key_file": KEYS, "remote_dir": DIRS,
        "tandem_remote_dir": DIRS, "user": ["''", "'-oProxyCommand=touch CANARY'", "\u00e9"],
        "target": ["xavier-agx-99", "'../boards/x'", "''"],
    }  # fmt: skip
    present = [k for k in keys if re.search(rf"\b{k}\b\s*[:=]", text)]
    key = rng.choice(present or sorted(keys))
    value = rng.choice(keys[key])
    if _is_ini(text):  # no YAML quoting there
        value = value.strip("'")
    return f"inventory-{key}", _replace_value(rng, text, key, value).encode()


def inventory_range(rng: random.Random, text: str) -> tuple[str, bytes]:
    pattern = rng.choice(
        ["orin[0:9999999999]", "orin[a:z]", "orin[9:1]", "orin[01:03:0]", "orin[0:99999]",
         "orin[01:03][01:03]", "orin[-5:5]", "orin[0:3:-1]", "orin[\u00e9:z]"]
    )  # fmt: skip
    if _is_ini(text):  # a host line
        out = text.replace("orin[01:03]", pattern, 1)
    elif "hosts:" in text:  # Ansible YAML: a host key
        out = text.replace("nx2:", f"'{pattern}':", 1)
    else:  # Tandem YAML: a board name
        out = text.replace("orin1:", f"'{pattern}':", 1)
    return "inventory-range", out.encode()


def inventory_chain(rng: random.Random, text: str) -> tuple[str, bytes]:
    """Groups nested thousands deep, or in a cycle."""
    depth = rng.choice([3000, 50_000])
    cycle = rng.random() < 0.3
    if _is_ini(text):
        chain = "".join(f"[g{i}:children]\ng{i + 1}\n\n" for i in range(depth))
        if cycle:
            chain += f"[g{depth}:children]\ng0\n"
        out = text + "\n" + chain + "[lab:children]\ng0\n"
    elif "children:" in text:  # Ansible YAML: flow style, as block style would be MBs of indent
        nested = "".join(f"{{children: {{g{i}: " for i in range(depth))
        out = text + "    deep: " + nested + "{}" + "}}" * depth + "\n"
    else:
        groups = "".join(f"  g{i}: [g{i + 1}]\n" for i in range(depth))
        out = text + groups + (f"  g{depth}: [g0]\n" if cycle else f"  g{depth}: [orin1]\n")
    return f"inventory-chain-{depth}" + ("-cycle" if cycle else ""), out.encode()


INVENTORY: list[Mutation] = [
    inventory_range, inventory_chain, inventory_value, type_tag, alias_bomb, encoding,
    inventory_value, hostile_scalar, deep_nesting, splice, lines, huge,
]  # fmt: skip
