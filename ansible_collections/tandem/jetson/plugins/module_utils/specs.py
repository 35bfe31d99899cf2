"""The argument specs of the tandem.jetson modules: one copy, read by the module stubs (for
``ansible-doc`` and sanity tests) and by the action plugins that do the work on the controller."""

from __future__ import annotations

from typing import Any

# Reaching the board: shared by every module that opens an SSH session to it.
_SSH: dict[str, dict[str, Any]] = {
    "target": {"type": "str"},
    "remote_dir": {"type": "str"},
    "known_hosts": {"type": "path"},
    "connect_timeout": {"type": "float", "default": 5.0},
    "command_timeout": {"type": "float", "default": 600.0},
}

PLAN_DEPLOY: dict[str, dict[str, Any]] = {
    "plan": {"type": "path", "required": True},
    **_SSH,
    "retries": {"type": "int", "default": 3},
}

PLAN_BENCH: dict[str, dict[str, Any]] = {
    **PLAN_DEPLOY,
    "tandem_bin": {"type": "str"},
    "iterations": {"type": "int"},
    "backend": {"type": "str", "choices": ["auto", "cuda", "cpu"]},
    "results_dir": {"type": "path", "default": "tandem-results"},
}

BOARD_FACTS: dict[str, dict[str, Any]] = {
    **_SSH,
    "fail_on_mismatch": {"type": "bool", "default": True},
}

FLEET_REPORT: dict[str, dict[str, Any]] = {
    "hosts": {"type": "list", "elements": "str", "required": True},
    "json_path": {"type": "path", "required": True},
    "table_path": {"type": "path"},
    "facts_var": {"type": "str", "default": "tandem_facts"},
    "deploy_var": {"type": "str", "default": "tandem_deployed"},
    "bench_var": {"type": "str", "default": "tandem_benched"},
    "fail_on_error": {"type": "bool", "default": True},
}
