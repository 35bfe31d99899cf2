"""tandem.jetson.fleet_report: documentation and argument spec; the work is its action plugin."""

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_report
short_description: Write one fleet report from every board's Tandem results
version_added: "0.1.0"
author: Tandem project (!UNKNOWN)
description:
  - Reads each host's registered results of M(tandem.jetson.board_facts),
    M(tandem.jetson.plan_deploy) and M(tandem.jetson.plan_bench) and writes one JSON document
    and one table - board, target, power mode, deploy, measured against predicted latency
    (each labelled measured, emulated or predicted) and every failure with its step and reason
    (an unreachable board included).
  - Both files are written atomically; never a partial report under the final name.
options:
  hosts:
    description: The boards of the report, in its order.
    type: list
    elements: str
    required: true
  json_path:
    description: Controller path of the JSON report (its folder must exist).
    type: path
    required: true
  table_path:
    description: Controller path of the text table; none is written when omitted.
    type: path
  facts_var:
    description: The variable holding each host's registered board_facts result.
    type: str
    default: tandem_facts
  deploy_var:
    description: The variable holding each host's registered plan_deploy result.
    type: str
    default: tandem_deployed
  bench_var:
    description: The variable holding each host's registered plan_bench result.
    type: str
    default: tandem_benched
  fail_on_error:
    description: Fail the task (after writing the report) when a board failed.
    type: bool
    default: true
attributes:
  check_mode:
    description: Writes the report in check mode too.
    support: full
notes:
  - Runs on the controller; run it from a play on localhost after the boards' play.
"""

EXAMPLES = r"""
- name: One fleet report
  tandem.jetson.fleet_report:
    hosts: "{{ groups['jetsons'] }}"
    json_path: fleet/report.json
    table_path: fleet/report.txt
"""

RETURN = r"""
report:
  description: The JSON document written (boards, benchmarks, failures).
  returned: always
  type: dict
table:
  description: The table written, one line per item.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.tandem.jetson.plugins.module_utils.specs import (  # noqa: E402
    FLEET_REPORT,
)


def main() -> None:
    module = AnsibleModule(argument_spec=FLEET_REPORT, supports_check_mode=True)
    module.fail_json(msg="tandem.jetson.fleet_report runs on the controller (its action plugin)")


if __name__ == "__main__":
    main()
