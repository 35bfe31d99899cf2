"""Shared test setup: GPU and board tests skip with a stated reason where the hardware is absent."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@functools.cache
def cuda_device_reason() -> str | None:
    """None when a CUDA GPU is usable, else why not."""
    try:
        from cuda.bindings import driver  # type: ignore[import-not-found]
    except ImportError as err:
        return f"cuda-python is not installed ({err})"
    try:
        (err,) = driver.cuInit(0)
        if err != driver.CUresult.CUDA_SUCCESS:
            return f"no usable CUDA driver/GPU (cuInit: {err.name})"
        err, count = driver.cuDeviceGetCount()
        if err != driver.CUresult.CUDA_SUCCESS or count == 0:
            return "no CUDA GPU on this machine"
    except Exception as exc:  # the driver library itself may be missing
        return f"no CUDA driver on this machine ({exc})"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_reason = None
    for item in items:
        if "gpu" in item.keywords:
            gpu_reason = gpu_reason or cuda_device_reason() or ""
            if gpu_reason:
                item.add_marker(pytest.mark.skip(reason=f"GPU test: {gpu_reason}"))
        if "board" in item.keywords:
            item.add_marker(
                pytest.mark.skip(reason="board test: needs a real Jetson board over SSH")
            )


# ----- pytest-xdist: `make test` runs -n 2 --dist loadgroup ------------------------------------
# A test module whose tests share per-process work: a module-scoped fixture or a cached function
# (tests/dla_sim/test_published.py computes every published figure once); split over two
# workers, each would pay for it (measured: 548 s and 535 s for that module's first test on each).
_SHARES_WORK = re.compile(r"scope=[\"']module[\"']|functools\.(lru_)?cache\b")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with these groups, each run by one worker in order: a conformance
    export chunk (exported once, each model deleted after its last check), and a test module
    that shares per-process work (_SHARES_WORK). Every other test is balanced one by one.

    Not ``xdist_group`` marks: pytest-xdist 3.8 groups by appending ``@group`` to ``item._nodeid``,
    which pytest 9.2's nodes no longer read (a node id is ``Node._id``), so the marks were silently
    ignored and a chunk's checks went to both workers. The controller, which sees only node ids,
    finds the group from the node id instead."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    from tests.conformance.test_conformance import xdist_group_of

    @functools.cache
    def shares_work(module: str) -> bool:
        path = config.rootpath / module
        return path.is_file() and bool(_SHARES_WORK.search(path.read_text(encoding="utf-8")))

    class GroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return xdist_group_of(nodeid) or (module if shares_work(module) else nodeid)

    return GroupScheduling(config, log)


# ----- model files (tests/models.py): built once per session, never downloaded -------------------
@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def zoo_model(model_cache_dir: Path) -> Callable[..., Path]:
    """``zoo_model(name, batch=1, resolution=None, opset=17, **options) -> Path``."""
    from tests.models import zoo_model_path

    return functools.partial(zoo_model_path, cache_dir=model_cache_dir)


@pytest.fixture(scope="session")
def model_file(model_cache_dir: Path) -> Callable[..., Path]:
    """``model_file(case: ModelCase) -> Path`` for zoo models and torch exports alike."""
    return lambda case: case.path(model_cache_dir)


@pytest.fixture(scope="session")
def group_dir(tmp_path_factory: pytest.TempPathFactory, zoo_model) -> Path:
    """A plan group of two models (FP16 on orin-agx-64gb, both DLA cores candidates), as
    ``tandem plan-group -o`` writes it; tests copy it before changing anything."""
    from tandem.cli import main

    out = tmp_path_factory.mktemp("group") / "mix"
    models = [zoo_model("unet-small", resolution=32), zoo_model("mobilenetv3-small", resolution=32)]
    argv = ["plan-group", *map(str, models), "--target", "orin-agx-64gb", "--fp16", "-o", str(out),
            "--json"]  # fmt: skip
    assert main(argv) == 0
    assert len(list(out.glob("*.plan"))) == 2
    return out


@pytest.fixture(scope="session")
def conformance_model(model_cache_dir: Path) -> Callable[..., Path]:
    """``conformance_model(source, name, names) -> Path``: tests/conformance's exports."""
    from tests.models import conformance_model_path

    return functools.partial(conformance_model_path, cache_dir=model_cache_dir)


@pytest.fixture(autouse=True)
def _locale_left_as_found():  # type: ignore[no-untyped-def]
    """Each test leaves the process locale as it found it. Some libraries set it for the whole
    process (ansible's AnsibleModule, onnx's StringNormalizer reference); a later test on the same
    xdist worker then reads files in the wrong encoding. A fresh-clone run (2026-12-02) failed
    inside torch's own template read, 'ascii' codec, in test_gpu_bench.py."""
    import locale

    before = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != before:
        locale.setlocale(locale.LC_ALL, before)
