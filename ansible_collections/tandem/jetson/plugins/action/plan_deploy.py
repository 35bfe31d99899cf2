"""Controller side of tandem.jetson.plan_deploy: Tandem's ``deploy_plan`` for one board."""

from __future__ import annotations

from typing import Any

from ansible_collections.tandem.jetson.plugins.module_utils.specs import PLAN_DEPLOY
from ansible_collections.tandem.jetson.plugins.plugin_utils.board_action import (
    BoardAction,
    board_failure,
)


class ActionModule(BoardAction):
    ARGUMENT_SPEC = PLAN_DEPLOY

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self.arguments(task_vars)

        from partitioner.errors import TandemError
        from targets.deploy import board_holds, deploy_plan

        plan = self.local_path(args["plan"])
        before = self.known_hosts_lines(args)
        try:
            board = self.board(task_vars, args)
            ssh = self.ssh_options(args)
            if self._task.check_mode:
                remote, held = board_holds(plan, board, **ssh)
                result.update(changed=not held, uploaded=False, remote_path=remote)
                return result
            done = deploy_plan(plan, board, retries=args["retries"], **ssh)
        except TandemError as err:
            result.update(board_failure(err))
            return result
        finally:
            self.note_recorded_keys(args, before, result)
        result.update(
            changed=done.uploaded,
            uploaded=done.uploaded,
            remote_path=done.remote_path,
            sha256=done.sha256,
            target=done.target,
            bytes=done.bytes,
            attempts=done.attempts,
            seconds=round(done.seconds, 3),
        )
        return result
