"""Controller-side base of the tandem.jetson action plugins.

The plugins run on the controller and call Tandem's own deploy code (``targets.deploy``,
``targets.board``, ``targets.ssh``): the board is the inventory host Ansible resolved (address,
port, user and key after its variable precedence, vault decrypted), host keys are checked as
Ansible's ``host_key_checking`` says, and Tandem's errors become Ansible results: a board that
cannot be reached is *unreachable* (so ``ignore_unreachable`` and ``max_fail_percentage`` apply),
anything else is *failed* with Tandem's one-line reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# Host variables the modules read when their option is not given (Tandem's inventory reader
# uses the same names: targets/inventory.py ANSIBLE_VARS).
HOST_VARS = {
    "target": "tandem_target",
    "remote_dir": "tandem_remote_dir",
    "tandem_bin": "tandem_bin",
    "known_hosts": "tandem_known_hosts",
}


# Imported here, at module level: ansible-playbook's strategy loads the action plugins in its
# main process before it forks a worker per host and task, so every worker starts with Tandem
# (numpy, ml_dtypes, paramiko: seconds of imports) already loaded.
try:
    import targets.board  # noqa: F401  # pylint: disable=unused-import
    import targets.deploy  # noqa: F401  # pylint: disable=unused-import
    import targets.fleet  # noqa: F401  # pylint: disable=unused-import

    TANDEM_MISSING: ImportError | None = None
except ImportError as missing:  # the task says so, in one line (tandem())
    TANDEM_MISSING = missing


def tandem() -> None:
    """Fail the task in one line when Tandem cannot be imported on the controller."""
    if TANDEM_MISSING is not None:
        raise AnsibleActionFail(
            f"the tandem.jetson modules run Tandem's own deploy code on the controller, and "
            f"importing it failed ({TANDEM_MISSING}); install Tandem (pip install tandem-rt) "
            "into the Python that runs ansible-playbook"
        )


class BoardAction(ActionBase):
    """An action that talks to one board over Tandem's SSH code, not Ansible's connection."""

    ARGUMENT_SPEC: dict[str, dict[str, Any]] = {}
    _requires_connection = False  # the connection plugin is never opened

    def arguments(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        """Validated options; the host-variable defaults (``HOST_VARS``) filled in."""
        validation, args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)
        del validation  # errors raise AnsibleActionFail inside validate_argument_spec
        for option, var in HOST_VARS.items():
            if option in self.ARGUMENT_SPEC and args.get(option) is None and var in task_vars:
                args[option] = self._templar.template(task_vars[var])
        tandem()
        return args

    def _connection_option(self, *names: str) -> Any:
        """An option of the host's connection plugin (ssh: ``host``; paramiko: ``remote_addr``)."""
        for name in names:
            try:
                value = self._connection.get_option(name)
            except KeyError:
                continue
            if value is not None:
                return value
        return None

    def host_key_checking(self) -> bool:
        """Ansible's setting for this host (config, ANSIBLE_HOST_KEY_CHECKING, host vars)."""
        value = self._connection_option("host_key_checking")
        return bool(C.HOST_KEY_CHECKING if value is None else value)

    def board(self, task_vars: dict[str, Any], args: dict[str, Any]) -> Any:
        """The inventory host as a Tandem board, refused in one line when it has no target."""
        from targets.inventory import ansible_board

        name = str(task_vars["inventory_hostname"])
        pc = self._play_context
        host = self._connection_option("host", "remote_addr") or pc.remote_addr or name
        key = self._connection_option("private_key_file") or pc.private_key_file
        variables: dict[str, Any] = {
            "ansible_host": host,
            "ansible_port": self._connection_option("port") or pc.port or 22,
            "ansible_user": self._connection_option("remote_user") or pc.remote_user,
            # As ssh does: a relative key file is taken from the current folder.
            "ansible_ssh_private_key_file": os.path.abspath(os.path.expanduser(key))
            if key
            else None,
            "tandem_target": args.get("target"),
            "tandem_remote_dir": args.get("remote_dir"),
            "tandem_bin": args.get("tandem_bin"),
        }
        source = Path(str(task_vars.get("inventory_file") or "the Ansible inventory"))
        present = {k: (v, 0) for k, v in variables.items() if v is not None}
        return ansible_board(name, present, source).with_target()

    def ssh_options(self, args: dict[str, Any]) -> dict[str, Any]:
        """Tandem's SSH options: host keys as Ansible checks them, the module's timeouts.

        ``host_key_checking`` true (Ansible's default): a host missing from known_hosts is
        refused. False: a new host's key is recorded on first use; a CHANGED key is refused
        all the same (OpenSSH's accept-new, never a silent accept of a different key).
        """
        from targets.ssh import Timeouts

        for option in ("connect_timeout", "command_timeout"):
            if not args[option] > 0:  # also refuses nan
                raise AnsibleActionFail(f"{option} must be a positive number of seconds")
        return {
            "accept_new_host_key": not self.host_key_checking(),
            "known_hosts": args.get("known_hosts"),
            "timeouts": Timeouts(total=args["connect_timeout"], command=args["command_timeout"]),
        }

    def known_hosts_lines(self, args: dict[str, Any]) -> list[str]:
        from targets.ssh import default_known_hosts

        try:
            with open(args.get("known_hosts") or default_known_hosts(), encoding="utf-8") as f:
                return f.read().splitlines()
        except OSError:
            return []

    def note_recorded_keys(
        self, args: dict[str, Any], before: list[str], result: dict[str, Any]
    ) -> None:
        """Say so when a first-seen host key was recorded (host_key_checking off): trusted on
        first use, but not in silence."""
        for line in self.known_hosts_lines(args)[len(before) :]:
            host, kind = (line.split() + ["", ""])[:2]
            result.setdefault("warnings", []).append(
                f"host_key_checking is off: trusted the new {kind} host key of {host} and "
                f"recorded it in {args.get('known_hosts') or '~/.ssh/known_hosts'}"
            )

    def local_path(self, path: str) -> str:
        """A controller path as Ansible takes it: relative to the playbook's folder."""
        return str(self._loader.path_dwim(path))


def board_failure(err: Exception) -> dict[str, Any]:
    """An Ansible result for a Tandem error: unreachable when the board could not be reached
    (or dropped mid-run and did not come back within the retries), else failed."""
    from targets.deploy import HashMismatchError
    from targets.ssh import TransientError

    if isinstance(err, TransientError) and not isinstance(err, HashMismatchError):
        return {"unreachable": True, "changed": False, "msg": str(err)}
    return {"failed": True, "changed": False, "msg": str(err)}
