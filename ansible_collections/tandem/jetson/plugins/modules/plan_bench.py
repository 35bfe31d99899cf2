"""tandem.jetson.plan_bench: documentation and argument spec; the work is its action plugin."""

from __future__ import annotations

DOCUMENTATION = r"""
module: plan_bench
short_description: Benchmark a Tandem plan on a Jetson board; measured and predicted as facts
version_added: "0.1.0"
author: Tandem project (!UNKNOWN)
description:
  - Runs C(tandem run PLAN --json --profile) on the board with Tandem's own deploy code (the
    code of C(tandem deploy --bench)) and brings the JSON and the Chrome trace back to
    C(RESULTS_DIR/BOARD/) on the controller.
  - Deploys the plan first, verified, when the board does not hold it (C(changed) then).
  - Sets the fact C(tandem_bench) with the measured latency and the predicted one, each
    labelled with where it came from - C(measured) (timed on the board's GPU/DLA),
    C(emulated) (timed on the board, but a segment ran on Tandem's reference or DLA emulator)
    or C(predicted) (Tandem's latency model when the plan was built).
options:
  plan:
    description:
      - The plan file on the controller, or a plan-group folder (C(tandem plan-group -o DIR)),
        whose plans all go up and, benchmarked, run at once; a relative path is taken from the
        playbook's folder.
    type: path
    required: true
  retries:
    description:
      - How many times a transient failure is retried (the deploy and the run together).
    type: int
    default: 3
  tandem_bin:
    description:
      - The C(tandem) command on the board.
      - Defaults to the host variable C(tandem_bin), else the venv C(tandem board setup)
        makes (C(REMOTE_DIR/venv/bin/tandem)).
    type: str
  iterations:
    description:
      - Timed runs (C(tandem run --iterations)); Tandem's default when omitted.
    type: int
  backend:
    description:
      - The backend of the run on the board (C(tandem run --backend)); Tandem's default when
        omitted.
    type: str
    choices: [auto, cuda, cpu]
  results_dir:
    description:
      - Controller folder for the fetched JSON and traces, one subfolder per board.
    type: path
    default: tandem-results
extends_documentation_fragment:
  - tandem.jetson.board
attributes:
  check_mode:
    description: Not supported; a benchmark is its own effect.
    support: none
"""

EXAMPLES = r"""
- name: Benchmark every board
  tandem.jetson.plan_bench:
    plan: "plans/resnet18-{{ tandem_target }}.plan"
    iterations: 50
  register: tandem_benched
  ignore_unreachable: true
"""

RETURN = r"""
uploaded:
  description: Whether the plan had to be sent first.
  returned: success
  type: bool
ansible_facts:
  description: Facts set for the host.
  returned: success
  type: complex
  contains:
    tandem_bench:
      description:
        - C(measured) (median_ms, min_ms, max_ms, iterations, source, where, backends) and
          C(predicted) (total_ms, source, where, power_mode), plus board, target, plan,
          remote_path, sha256 and the controller paths bench_json and profile. A plan group
          adds models_fps (frames/s per model) and devices_busy (busy fraction per device) to
          both, and its latency keys are null.
      returned: success
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.tandem.jetson.plugins.module_utils.specs import (  # noqa: E402
    PLAN_BENCH,
)


def main() -> None:
    module = AnsibleModule(argument_spec=PLAN_BENCH)
    module.fail_json(msg="tandem.jetson.plan_bench runs on the controller (its action plugin)")


if __name__ == "__main__":
    main()
