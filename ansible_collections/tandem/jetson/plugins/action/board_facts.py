"""Controller side of tandem.jetson.board_facts: Tandem's ``board_facts`` for one board."""

from __future__ import annotations

from typing import Any

from ansible_collections.tandem.jetson.plugins.module_utils.specs import BOARD_FACTS
from ansible_collections.tandem.jetson.plugins.plugin_utils.board_action import (
    BoardAction,
    board_failure,
)


class ActionModule(BoardAction):
    ARGUMENT_SPEC = BOARD_FACTS

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self.arguments(task_vars)

        from partitioner.errors import TandemError
        from targets.board import board_facts

        before = self.known_hosts_lines(args)
        try:
            board = self.board(task_vars, args)
            facts = board_facts(board, **self.ssh_options(args))
        except TandemError as err:
            result.update(board_failure(err))
            return result
        finally:
            self.note_recorded_keys(args, before, result)
        result["changed"] = False
        # tandem_build_target is what `tandem build --target` takes for this board.
        result["ansible_facts"] = {
            "tandem_board": facts.to_json(),
            "tandem_build_target": facts.target,
        }
        mismatch = facts.mismatch()
        if mismatch is not None and args["fail_on_mismatch"]:
            result.update(failed=True, msg=mismatch)
        return result
