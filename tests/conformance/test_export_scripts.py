"""Each conformance export script answers ``--list`` under its own venv (a quick check that it
imports and names its models; the exports themselves run in the conformance suite)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bench.conformance import TEXT, exporter_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# script -> (venv folder at the repo root, env var that overrides it, the fewest models it lists)
SCRIPTS = {
    "export_ultralytics.py": (".venv-export", "TANDEM_EXPORT_PYTHON", 8),
    "export_transformers.py": (".venv-export", "TANDEM_EXPORT_PYTHON", 6),
    "export_paddle.py": (".venv-paddle", "TANDEM_PADDLE_PYTHON", 4),
}


def _python(venv: str, env_var: str) -> Path | None:
    path = Path(os.environ[env_var]) if os.environ.get(env_var) else ROOT / venv / "bin" / "python"
    return path if path.exists() else None


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_list(script: str) -> None:
    venv, env_var, fewest = SCRIPTS[script]
    python = _python(venv, env_var)
    if python is None:
        pytest.skip(f"no exporter venv: no {venv} at the repo root and {env_var} is not set")
    result = subprocess.run([str(python), str(HERE / script), "--list"], capture_output=True,
                            timeout=120, check=False, env=exporter_env(), **TEXT)
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert len(names) >= fewest, names
    assert len(set(names)) == len(names), names
