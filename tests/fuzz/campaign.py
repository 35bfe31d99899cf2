"""A fuzz campaign: seeded cases per input kind, run through the CLI commands that read that kind,
checked by the harness, failures grouped into classes with one reproducer each.

Case ``j`` of a kind depends only on (seed, kind, j): the mutation is the kind's ``j``-th in
turn (so a short run still tries each one) with random parameters, and the command is a seeded
choice among the kind's commands. A campaign is therefore replayable from its seed; the budget
only decides how far it gets.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz import npz_mutators, onnx_mutators, plan_mutators, yaml_mutators
from tests.fuzz.harness import Expect, Limits, Violation, check, run_tandem
from tests.fuzz.seeds import TARGET, Seeds, make_seeds

OUT = "out"  # each case's output folder, relative to the case folder


@dataclass(frozen=True)
class Command:
    name: str
    argv: tuple[str, ...]  # {input} {model} {plan} {board} {group} are filled per case
    outputs: tuple[str, ...] = ()
    json: bool = False
    mismatch: bool = False  # exit 3 is allowed (compare)


# inspect twice: --json (whose escapes hide bad strings) and the text report, which prints layer
# and rule names as they are (--verbose: every layer's row, not the summary).
_INSPECT = ("inspect", "{model}", "--target", TARGET)
_BUILD = ("build", "{model}", "--target", TARGET, "--fp16", "--quiet", "-o", f"{OUT}/model.plan")
_PLAN_OUT = (f"{OUT}/model.plan",)
_NPZ_OUT = (f"{OUT}/outputs.npz",)
_SAVE = ("--save-outputs", f"{OUT}/outputs.npz")
_SSH = ("--known-hosts", "known_hosts")  # empty: no host is trusted, nothing is recorded
# One try with a short connect timeout: the fuzzed part is the inventory, not the network.
_DEPLOY = ("--inventory", "{input}", "--json", "--retries", "0", "--connect-timeout", "2", *_SSH)
COMMANDS: dict[str, list[Command]] = {
    "onnx": [
        Command("inspect", ("inspect", "{input}", "--target", TARGET, "--json"), json=True),
        Command("inspect-text", ("inspect", "{input}", "--target", TARGET, "--verbose")),
        Command("build", tuple(a.replace("{model}", "{input}") for a in _BUILD), _PLAN_OUT),
        Command("run", ("run", "{input}", "--json", *_SAVE), _NPZ_OUT, json=True),
        Command("compare", ("compare", "{input}"), mismatch=True),
    ],
    "policy": [
        Command("inspect", (*_INSPECT, "--policy", "{input}", "--json"), json=True),
        Command("inspect-text", (*_INSPECT, "--policy", "{input}", "--verbose")),
        Command("build", (*_BUILD, "--policy", "{input}"), _PLAN_OUT),
    ],
    "target": [
        Command("inspect", ("inspect", "{model}", "--target", "{input}", "--json"), json=True),
        Command("inspect-text", ("inspect", "{model}", "--target", "{input}", "--verbose")),
        Command("build", tuple(a if a != TARGET else "{input}" for a in _BUILD), _PLAN_OUT),
    ],
    "inventory": [
        Command("deploy", ("deploy", "{plan}", "--board", "{board}", *_DEPLOY), json=True),
        Command("deploy-group", ("deploy", "{plan}", "--group", "{group}", *_DEPLOY), json=True),
        Command("board-facts", ("board", "facts", "{board}", "--inventory", "{input}", *_SSH)),
    ],
    "plan": [
        Command("inspect", ("inspect", "{input}", "--json"), json=True),
        Command("inspect-text", ("inspect", "{input}", "--verbose")),
        Command("run", ("run", "{input}", "--backend", "cpu", "--json", *_SAVE), _NPZ_OUT, True),
        Command(
            "compare",
            ("compare", "{model}", "--plan", "{input}", "--backend", "cpu"),
            mismatch=True,
        ),
    ],  # fmt: skip
    "npz": [
        Command("run", ("run", "{model}", "--inputs", "{input}", "--json", *_SAVE), _NPZ_OUT, True),
        Command(
            "run-plan",
            ("run", "{plan}", "--inputs", "{input}", "--backend", "cpu", "--json"),
            json=True,
        ),
        Command("compare", ("compare", "{model}", "--inputs", "{input}"), mismatch=True),
    ],  # fmt: skip
}
KINDS = list(COMMANDS)


@dataclass
class Mutant:
    op: str
    data: bytes
    filename: str
    fields: dict[str, str] = field(default_factory=dict)


class Mutator:
    """Turns (kind, j, rng) into a mutant of that kind's seed, writing extra files it needs."""

    def __init__(self, seeds: Seeds) -> None:
        self.seeds = seeds
        self.model = seeds.model.read_bytes()
        self.plan = seeds.plan.read_bytes()
        self.npz = seeds.npz.read_bytes()

    def __call__(self, kind: str, j: int, rng: random.Random, case_dir: Path) -> Mutant:
        if kind == "onnx":
            return Mutant(*onnx_mutators.mutate(rng, self.model, case_dir, j), "input.onnx")
        if kind == "plan":
            return Mutant(*plan_mutators.mutate(rng, self.plan, case_dir, j), "input.plan")
        if kind == "npz":
            return Mutant(*npz_mutators.mutate(rng, self.npz, case_dir, j), "input.npz")
        if kind == "policy":
            op = yaml_mutators.POLICY[j % len(yaml_mutators.POLICY)]
            return Mutant(*op(rng, self.seeds.policy), "policy.yaml")
        if kind == "target":
            op = yaml_mutators.TARGET[j % len(yaml_mutators.TARGET)]
            return Mutant(*op(rng, self.seeds.target), "target.yaml")
        # Two mutations per seed in turn, shifted each round so that every pairing comes up.
        ops, seeds = yaml_mutators.INVENTORY, self.seeds.inventories
        inv = seeds[(j // 2 + j // len(ops)) % len(seeds)]
        name, data = ops[j % len(ops)](rng, inv.text)
        (case_dir / "keys").mkdir()
        # the seed's key file
        (case_dir / "keys" / "orin").write_text("not a private key\n", encoding="utf-8")
        (case_dir / "known_hosts").write_text("", encoding="utf-8")
        return Mutant(name, data, inv.filename, {"board": inv.board, "group": inv.group})


@dataclass
class CaseResult:
    kind: str
    j: int
    op: str
    command: str
    argv: list[str]
    exit: int
    wall_s: float
    peak_rss: int
    violations: list[Violation]
    stderr: str


@dataclass
class FailureClass:
    kind: str
    rule: str
    key: str
    cases: int = 0
    example: CaseResult | None = None
    reproducer: Path | None = None


@dataclass
class Summary:
    seed: int
    budget_s: float
    jobs: int
    limits: Limits
    started: str
    wall_s: float = 0.0
    tried: Counter = field(default_factory=Counter)
    exits: dict[str, Counter] = field(default_factory=dict)
    violating: Counter = field(default_factory=Counter)
    messages: dict[str, Counter] = field(default_factory=dict)  # error lines: how deep it got
    classes: dict[tuple[str, str, str], FailureClass] = field(default_factory=dict)

    @property
    def violations(self) -> int:
        return sum(self.violating.values())


_NUMBER = re.compile(r"-[-+]?(\d[\d.]*(e[-+]?\d+)?|nan|inf)$")  # resize-scales-1e+30, nesting-3000


def _case_key(result: CaseResult, v: Violation) -> str:
    # A traceback's class is where it was raised, whatever the command; any other rule's class
    # is the command and the mutation (without its random number).
    if v.rule == "traceback":
        return v.signature
    key = f"{result.command} {_NUMBER.sub('', result.op)}"
    return f"{key}: {v.signature}" if v.signature else key


def run_case(
    kind: str, j: int, seed: int, mutator: Mutator, work: Path, limits: Limits
) -> tuple[CaseResult, Path]:
    rng = random.Random(f"{seed}:{kind}:{j}")
    case_dir = Path(tempfile.mkdtemp(prefix=f"{kind}-{j}-", dir=work))
    (case_dir / OUT).mkdir()
    mutant = mutator(kind, j, rng, case_dir)
    (case_dir / mutant.filename).write_bytes(mutant.data)
    command = rng.choice(COMMANDS[kind])
    fill = {"input": mutant.filename, "model": str(mutator.seeds.model),
            "plan": str(mutator.seeds.plan), **mutant.fields}  # fmt: skip
    argv = [a.format(**fill) for a in command.argv]
    expect = Expect(
        exits=frozenset({0, 1, 2, 3} if command.mismatch else {0, 1, 2}),
        outputs=tuple(os.path.relpath(path, OUT) for path in command.outputs),
        json_stdout=command.json,
        canary=case_dir / "CANARY",
    )
    result = run_tandem(argv, case_dir, limits)
    violations = check(result, expect, case_dir / OUT, limits)
    return CaseResult(kind, j, mutant.op, command.name, argv, result.exit, result.wall_s,
                      result.peak_rss, violations, result.stderr), case_dir  # fmt: skip


def run_campaign(
    *,
    budget_s: float,
    seed: int = 0,
    kinds: list[str] | None = None,
    jobs: int = 2,
    max_cases: int | None = None,
    limits: Limits | None = None,
    work: Path | None = None,
    repro: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Summary:
    """Run cases round-robin over ``kinds`` until ``budget_s`` seconds of fuzzing have passed
    (cases in flight finish) or ``max_cases`` ran; seeds are made first, outside the budget."""
    kinds = kinds or KINDS
    limits = limits or Limits()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    summary = Summary(seed, budget_s, jobs, limits, started)
    own_work = work is None
    work = Path(tempfile.mkdtemp(prefix="tandem-fuzz-")) if work is None else work
    try:
        progress("making seeds (tandem zoo, tandem build)")
        mutator = Mutator(make_seeds(work / "seeds"))
        start = time.monotonic()

        def record(future: Future) -> None:  # in this thread only: no lock needed
            result, case_dir = future.result()
            progress(f"{result.kind}#{result.j} {result.command} {result.op}: exit {result.exit}, "
                     f"{result.wall_s:.1f} s, {result.peak_rss >> 20} MiB")  # fmt: skip
            summary.tried[result.kind] += 1
            summary.exits.setdefault(result.kind, Counter())[str(result.exit)] += 1
            if result.exit == 1 and result.stderr.startswith("tandem: error: "):
                line = result.stderr.splitlines()[0][len("tandem: error: ") :]
                summary.messages.setdefault(result.kind, Counter())[line[:90]] += 1
            if result.violations:
                summary.violating[result.kind] += 1
            for v in result.violations:
                progress(f"    {v.rule}: {v.detail}")
                key = (result.kind, v.rule, _case_key(result, v))
                cls = summary.classes.setdefault(key, FailureClass(*key))
                cls.cases += 1
                if cls.example is None or result.j < cls.example.j:
                    cls.example = result
                    if repro is not None:
                        cls.reproducer = save_reproducer(repro, cls, case_dir, mutator.seeds)
            shutil.rmtree(case_dir, ignore_errors=True)

        with ThreadPoolExecutor(jobs) as pool:
            pending: set[Future] = set()
            i = 0
            while (max_cases is None or i < max_cases) and time.monotonic() - start < budget_s:
                if len(pending) >= jobs:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        record(future)
                    continue
                kind = kinds[i % len(kinds)]
                j = i // len(kinds)
                pending.add(pool.submit(run_case, kind, j, seed, mutator, work, limits))
                i += 1
            for future in wait(pending).done:
                record(future)
        summary.wall_s = time.monotonic() - start
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    return summary


def save_reproducer(repro: Path, cls: FailureClass, case_dir: Path, seeds: Seeds) -> Path:
    """The case's files, ``command.sh`` to replay it from this folder, its stderr and facts.
    Seeds it refers to are copied once into ``repro/seeds``."""
    assert cls.example is not None
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{cls.kind}-{cls.rule}-{cls.key}").strip("-")[:90]
    folder = repro / slug
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(case_dir, folder, symlinks=True)
    shutil.rmtree(folder / OUT, ignore_errors=True)
    (folder / OUT).mkdir()
    (repro / "seeds").mkdir(parents=True, exist_ok=True)
    for path in (seeds.model, seeds.plan):
        if not (repro / "seeds" / path.name).exists():
            shutil.copy2(path, repro / "seeds" / path.name)
    argv = [a.replace(str(seeds.folder), "../seeds") for a in cls.example.argv]
    (folder / "command.sh").write_text(
        "#!/bin/sh\n# replay: run from a Tandem checkout, PYTHONPATH pointing at it\n"
        f'cd "$(dirname "$0")" && exec python -m tandem {shlex.join(argv)}\n'
    , encoding="utf-8")
    os.chmod(folder / "command.sh", 0o755)
    (folder / "stderr.txt").write_text(cls.example.stderr, encoding="utf-8")
    facts = {
        "kind": cls.kind, "mutation": cls.example.op, "case": cls.example.j, "rule": cls.rule,
        "class": cls.key, "exit": cls.example.exit, "wall_s": round(cls.example.wall_s, 2),
        "peak_rss_mib": cls.example.peak_rss >> 20,
        "violations": [f"{v.rule}: {v.detail}" for v in cls.example.violations],
    }  # fmt: skip
    (folder / "case.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return folder
