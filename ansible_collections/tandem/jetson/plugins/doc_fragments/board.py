"""The options every tandem.jetson module that reaches a board shares (module_utils/specs.py)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  target:
    description:
      - The board's Tandem target (a name from Tandem's C(targets/boards/), such as
        C(orin-agx-64gb)).
      - Defaults to the host variable C(tandem_target); a host with neither is refused.
    type: str
  remote_dir:
    description:
      - Tandem's folder on the board; plans go to C(REMOTE_DIR/plans/), results to
        C(REMOTE_DIR/results/).
      - Defaults to the host variable C(tandem_remote_dir), else C(~/.tandem).
    type: str
  known_hosts:
    description:
      - The controller's known_hosts file the board's host key is checked against.
      - Defaults to the host variable C(tandem_known_hosts), else C(~/.ssh/known_hosts).
      - With Ansible's C(host_key_checking) on (its default) a board missing from it is
        refused; with it off a new board's key is recorded there on first use. A key that
        differs from the recorded one is always refused.
    type: path
  connect_timeout:
    description:
      - Seconds to give up reaching the board (TCP connect, SSH handshake and
        authentication, retries included).
    type: float
    default: 5.0
  command_timeout:
    description:
      - Seconds one command on the board may run.
    type: float
    default: 600.0
notes:
  - Runs on the controller (an action plugin) with Tandem's own SSH code, which must be
    importable by the Python running ansible-playbook (C(pip install tandem-rt)). The board is
    the inventory host as Ansible resolved it (C(ansible_host), C(ansible_port),
    C(ansible_user), C(ansible_ssh_private_key_file), vault-decrypted); keys with a passphrase
    go through ssh-agent. Bastions (ProxyJump) and passwords are not supported.
  - A board that cannot be reached, or drops and does not come back within the retries, is
    reported unreachable, so C(ignore_unreachable) and C(max_fail_percentage) apply.
"""
