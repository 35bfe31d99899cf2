"""Controller side of tandem.jetson.fleet_report: one report from every board's results."""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.tandem.jetson.plugins.module_utils.specs import FLEET_REPORT
from ansible_collections.tandem.jetson.plugins.plugin_utils.board_action import tandem


class ActionModule(ActionBase):
    _requires_connection = False  # reads registered results, writes two local files

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=FLEET_REPORT)[1]
        tandem()

        from partitioner.errors import TandemError
        from targets.fleet import fleet_row, fleet_table, write_fleet_report

        hostvars = task_vars.get("hostvars", {})

        def registered(host: str, var: str) -> Any:
            value = hostvars[host].get(var) if host in hostvars else None
            return self._templar.template(value) if value is not None else None

        rows = [
            fleet_row(
                host,
                facts=registered(host, args["facts_var"]),
                deploy=registered(host, args["deploy_var"]),
                bench=registered(host, args["bench_var"]),
            )
            for host in args["hosts"]
        ]
        json_path = self._loader.path_dwim(args["json_path"])
        table_path = self._loader.path_dwim(args["table_path"]) if args["table_path"] else None
        try:
            doc = write_fleet_report(rows, json_path, table_path)
        except TandemError as err:
            result.update(failed=True, msg=str(err))
            return result
        result.update(changed=True, report=doc, table=fleet_table(rows).splitlines())
        if doc["failures"] and args["fail_on_error"]:
            reasons = "; ".join(
                f"{f['board']} at {f['step']}: {f['reason']}" for f in doc["failures"]
            )
            result.update(
                failed=True,
                msg=f"{len(doc['failures'])} of {len(rows)} boards failed ({json_path}): {reasons}",
            )
        return result
