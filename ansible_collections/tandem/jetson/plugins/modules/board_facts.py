"""tandem.jetson.board_facts: documentation and argument spec; the work is its action plugin."""

from __future__ import annotations

DOCUMENTATION = r"""
module: board_facts
short_description: Read what a Jetson board is and check it against its Tandem target
version_added: "0.1.0"
author: Tandem project (!UNKNOWN)
description:
  - The facts C(tandem board facts) reads, with the same code - arch, L4T, JetPack, CUDA and
    TensorRT versions, DLA core count (TensorRT's) and the nvpmodel power mode - checked
    against what Tandem's catalog says the board's target runs.
  - Sets C(tandem_board) (the facts and the checks) and C(tandem_build_target), the name
    C(tandem build --target) takes for this board.
options:
  fail_on_mismatch:
    description:
      - Fail the task when a fact differs from the target's (the facts are set either way).
    type: bool
    default: true
extends_documentation_fragment:
  - tandem.jetson.board
attributes:
  check_mode:
    description: Reads only; runs in check mode too.
    support: full
"""

EXAMPLES = r"""
- name: Check each board is what the inventory says
  tandem.jetson.board_facts:
  register: tandem_facts
"""

RETURN = r"""
ansible_facts:
  description: Facts set for the host.
  returned: always, unless the board was unreachable
  type: complex
  contains:
    tandem_board:
      description:
        - board, target, arch, l4t, jetpack, cuda, tensorrt, dla_cores, power_mode, raw (the
          commands' output), checks (fact, expected, actual, ok, note) and ok.
      type: dict
    tandem_build_target:
      description: The target to build this board's plans for.
      type: str
      sample: orin-agx-64gb
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.tandem.jetson.plugins.module_utils.specs import (  # noqa: E402
    BOARD_FACTS,
)


def main() -> None:
    module = AnsibleModule(argument_spec=BOARD_FACTS, supports_check_mode=True)
    module.fail_json(msg="tandem.jetson.board_facts runs on the controller (its action plugin)")


if __name__ == "__main__":
    main()
