"""tandem.jetson.plan_deploy: documentation and argument spec; the work is its action plugin."""

from __future__ import annotations

DOCUMENTATION = r"""
module: plan_deploy
short_description: Copy a Tandem plan to a Jetson board, verified and atomic
version_added: "0.1.0"
author: Tandem project (!UNKNOWN)
description:
  - Uploads a plan built by C(tandem build) to C(REMOTE_DIR/plans/) on the board with Tandem's
    own deploy code (the code of C(tandem deploy)), to a temporary name; the copy's SHA-256 is
    computed on the board and only a matching copy is renamed over the final name (atomic on
    one filesystem).
  - Refuses, before connecting, a plan built for another target than the board's.
  - Idempotent; C(changed=false) when the board already holds a file with the plan's bytes.
  - Transient failures (a dropped connection, a corrupted copy) are retried with exponential
    backoff.
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
      - How many times a transient failure is retried.
    type: int
    default: 3
extends_documentation_fragment:
  - tandem.jetson.board
attributes:
  check_mode:
    description: Connects and compares the board's copy's SHA-256; uploads nothing.
    support: full
"""

EXAMPLES = r"""
- name: Deploy the plan of each board's target
  tandem.jetson.plan_deploy:
    plan: "plans/resnet18-{{ tandem_target }}.plan"
  register: tandem_deployed
  ignore_unreachable: true
"""

RETURN = r"""
uploaded:
  description: Whether the plan was sent (false when the board already held its bytes).
  returned: success
  type: bool
remote_path:
  description: Where the plan is on the board.
  returned: success
  type: str
  sample: /home/nvidia/.tandem/plans/resnet18-orin-agx-64gb.plan
sha256:
  description: SHA-256 of the plan, as verified on the board.
  returned: success
  type: str
target:
  description: The target the plan was built for (the board's).
  returned: success
  type: str
bytes:
  description: Bytes sent (0 when nothing was uploaded).
  returned: success
  type: int
attempts:
  description: Sessions it took (1 without retries).
  returned: success
  type: int
seconds:
  description: Wall time of the deploy.
  returned: success
  type: float
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.tandem.jetson.plugins.module_utils.specs import (  # noqa: E402
    PLAN_DEPLOY,
)


def main() -> None:
    module = AnsibleModule(argument_spec=PLAN_DEPLOY, supports_check_mode=True)
    module.fail_json(msg="tandem.jetson.plan_deploy runs on the controller (its action plugin)")


if __name__ == "__main__":
    main()
