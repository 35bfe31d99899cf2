"""Controller side of tandem.jetson.plan_bench: Tandem's ``deploy_plan(bench=True)``."""

from __future__ import annotations

from typing import Any

from ansible_collections.tandem.jetson.plugins.module_utils.specs import PLAN_BENCH
from ansible_collections.tandem.jetson.plugins.plugin_utils.board_action import (
    BoardAction,
    board_failure,
)


class ActionModule(BoardAction):
    ARGUMENT_SPEC = PLAN_BENCH
    _supports_check_mode = False  # a benchmark is its own effect

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self.arguments(task_vars)

        from partitioner.errors import TandemError
        from targets.deploy import deploy_plan
        from targets.fleet import bench_figures

        if args["iterations"] is not None and args["iterations"] < 1:
            result.update(failed=True, msg="iterations must be at least 1")
            return result
        plan = self.local_path(args["plan"])
        before = self.known_hosts_lines(args)
        try:
            board = self.board(task_vars, args)
            done = deploy_plan(
                plan,
                board,
                bench=True,
                iterations=args["iterations"],
                run_args=["--backend", args["backend"]] if args["backend"] else [],
                results_dir=self.local_path(args["results_dir"]),
                retries=args["retries"],
                **self.ssh_options(args),
            )
        except TandemError as err:
            result.update(board_failure(err))
            return result
        finally:
            self.note_recorded_keys(args, before, result)
        report = done.bench or {}
        bench = {
            "board": board.name,
            "target": done.target,
            "plan": plan,
            "remote_path": done.remote_path,
            "sha256": done.sha256,
            **bench_figures(report, board.name),
            "bench_json": done.bench_json,
            "profile": done.profile,
        }
        # Deploying is what changes the board; a benchmark of a plan it held changes nothing.
        result.update(changed=done.uploaded, uploaded=done.uploaded)
        result["ansible_facts"] = {"tandem_bench": bench}
        return result
