"""Shared test setup: GPU and board tests skip with a stated reason where the hardware is absent."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

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
def conformance_model(model_cache_dir: Path) -> Callable[..., Path]:
    """``conformance_model(source, name, names) -> Path``: tests/conformance's exports."""
    from tests.models import conformance_model_path

    return functools.partial(conformance_model_path, cache_dir=model_cache_dir)
