"""The locks in requirements/ agree with pyproject.toml, with each other and with this venv.

``make demo`` / ``make test`` / ``.ci/run`` install exact versions from ``requirements/*.txt``
(pip-compile output); pyproject.toml keeps the compatible ranges a library user installs. These
tests fail when the two drift apart (a dependency added, removed or re-ranged without
``make lock``), when a lock holds anything but exact pins, or when the venv the tests run in was
not installed from the lock.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
RELOCK = "run `make lock` and commit requirements/"


@dataclass(frozen=True)
class Lock:
    path: Path
    pins: dict[str, Version]  # canonical name -> exact version
    via_pyproject: set[str]  # packages the lock holds because pyproject.toml asks for them
    extras: set[str]  # the extras pip-compile was run with (from the header)
    inputs: list[str]  # the input files named in the header's command


def read_lock(path: Path) -> Lock:
    text = path.read_text(encoding="utf-8")
    command = re.search(r"#\s+pip-compile (.*)", text)
    assert command, f"{path.name}: no pip-compile header; {RELOCK}"
    args = command.group(1).split()
    extras = {a.split("=", 1)[1] for a in args if a.startswith("--extra=")}
    inputs = [a for a in args if not a.startswith("-")]
    pins: dict[str, Version] = {}
    via: set[str] = set()
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            if current and re.search(r"#\s+(via\s+)?tandem-rt \(pyproject\.toml\)", line):
                via.add(current)
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)(\s*;.*)?", line.strip())
        assert match, f"{path.name}:{number}: '{line.strip()}' is not an exact pin (name==version)"
        current = canonicalize_name(match.group(1))
        assert current not in pins, f"{path.name}:{number}: {current} pinned twice"
        pins[current] = Version(match.group(2))
    return Lock(path, pins, via, extras, inputs)


def pyproject() -> dict:  # type: ignore[type-arg]
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]  # type: ignore[no-any-return]


def requirements_of(extras: set[str]) -> list[Requirement]:
    project = pyproject()
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in sorted(extras):
        assert extra in project["optional-dependencies"], (
            f"the lock was compiled with extra '{extra}', which pyproject.toml no longer has; "
            + RELOCK
        )
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    env = default_environment()
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def _build_inputs(lock: Lock) -> list[Requirement]:
    reqs = []
    for name in lock.inputs:
        if name.endswith(".in"):
            for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    reqs.append(Requirement(line))
    return reqs


LOCKS = {name: REQ / f"{name}.txt" for name in ("demo", "test", "paddle", "export", "lock-tools")}


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_lock_holds_only_exact_pins(name: str) -> None:
    lock = read_lock(LOCKS[name])
    assert lock.pins, f"{name}.txt pins nothing"


@pytest.mark.parametrize("name", ["demo", "test"])
def test_lock_satisfies_pyproject(name: str) -> None:
    """Every dependency pyproject.toml declares for the profile is pinned inside its range."""
    lock = read_lock(LOCKS[name])
    for req in requirements_of(lock.extras) + _build_inputs(lock):
        key = canonicalize_name(req.name)
        assert key in lock.pins, f"{name}.txt lacks {req} (pyproject.toml asks for it); {RELOCK}"
        assert req.specifier.contains(lock.pins[key], prereleases=True), (
            f"{name}.txt pins {key}=={lock.pins[key]}, outside pyproject.toml's '{req}'; {RELOCK}"
        )


@pytest.mark.parametrize("name", ["demo", "test"])
def test_lock_holds_nothing_pyproject_dropped(name: str) -> None:
    lock = read_lock(LOCKS[name])
    declared = {canonicalize_name(r.name) for r in requirements_of(lock.extras)}
    stale = sorted(lock.via_pyproject - declared)
    assert not stale, (
        f"{name}.txt still pins {stale} for pyproject.toml, which dropped them; {RELOCK}"
    )


def test_profiles_cover_what_the_makefile_promises() -> None:
    demo, test = read_lock(LOCKS["demo"]), read_lock(LOCKS["test"])
    assert demo.extras == {"compare", "cuda"}, demo.extras
    assert test.extras == set(pyproject()["optional-dependencies"]), (
        f"test.txt covers extras {sorted(test.extras)}, pyproject.toml has "
        f"{sorted(pyproject()['optional-dependencies'])}; {RELOCK}"
    )
    # the demo stays lean: none of the test-only tools or PyTorch
    for heavy in ("torch", "pytest", "ruff", "mypy", "hypothesis", "nvidia-cuda-nvrtc-cu11"):
        assert heavy not in demo.pins, f"demo.txt installs {heavy}, which `make demo` never uses"


def test_demo_lock_is_the_test_lock_restricted() -> None:
    """One version of each package whichever profile installed it."""
    demo, test = read_lock(LOCKS["demo"]), read_lock(LOCKS["test"])
    differ = {k: (v, test.pins.get(k)) for k, v in demo.pins.items() if test.pins.get(k) != v}
    assert not differ, f"demo.txt and test.txt disagree (demo, test): {differ}; {RELOCK}"


@pytest.mark.parametrize("name", ["paddle", "export"])
def test_exporter_lock_pins_its_inputs(name: str) -> None:
    """The exporter venvs' locks (``make paddle-env``, ``make export-env``) satisfy their .in."""
    lock = read_lock(LOCKS[name])
    for req in _build_inputs(lock):
        key = canonicalize_name(req.name)
        assert key in lock.pins and req.specifier.contains(lock.pins[key], prereleases=True), (
            f"{name}.txt does not satisfy '{req}' of requirements/{name}.in; {RELOCK}"
        )


def test_this_venv_was_installed_from_the_test_lock() -> None:
    """What the suite runs against is what the lock says (`make test` installs it)."""
    lock = read_lock(LOCKS["test"])
    wrong = {}
    for name, version in lock.pins.items():
        try:
            have = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            wrong[name] = (str(version), "missing")
            continue
        if have != version:
            wrong[name] = (str(version), str(have))
    assert not wrong, (
        f"installed packages differ from requirements/test.txt (locked, installed): {wrong}; "
        "reinstall with `make test` (rm .venv/.test-installed first if the venv was changed "
        "by hand)"
    )
