"""An SSH connection to one board: lazy open, idempotent close, commands as argv, transfers.

paramiko is imported on first use so the package imports without it. Unknown host keys are
refused (paramiko's ``RejectPolicy`` behaviour) unless the caller opts in to trust-on-first-use,
which records the key in the known_hosts file it names, as OpenSSH's ``accept-new`` does; a
*changed* key is always refused. Remote commands are argv lists joined with ``shlex.join``:
user input is never concatenated into a shell line.

Failures are classified once, here: authentication, key-file and host-key errors (and a peer
that is not an SSH server) are permanent; refused or reset connections, timeouts and drops are
:class:`TransientError`, the only kind a caller retries.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shlex
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partitioner.errors import TandemError
from targets.inventory import Board

# paramiko logs its transport thread's failures with tracebacks; without a handler Python's
# last-resort handler prints them on stderr. We report every failure ourselves, in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class BoardError(TandemError):
    """Something went wrong talking to a board."""


class HostKeyError(BoardError):
    """The board's host key is unknown (and not accepted) or has changed."""


class AuthError(BoardError):
    """The board refused our credentials."""


class TransientError(BoardError):
    """A failure that may pass: unreachable, timed out, connection dropped. Retried."""


class UnreachableError(TransientError):
    """No SSH server answered at host:port."""


class SSHTimeoutError(TransientError):
    """A connect / banner / auth / channel / command timeout expired."""


class RemoteCommandError(BoardError):
    """A remote command exited non-zero."""

    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Timeouts:
    """Seconds. paramiko's four are set separately (``connect`` also bounds the key exchange);
    ``total`` bounds opening a session to one board, every phase and every retry of a caller
    together (each phase gets at most what is left of it); ``command`` bounds one remote
    command."""

    connect: float = 10.0
    banner: float = 15.0
    auth: float = 15.0
    channel: float = 15.0
    command: float = 600.0
    total: float = 5.0


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    seconds: float


def fingerprint(key: Any) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def default_known_hosts() -> str:
    return os.path.expanduser("~/.ssh/known_hosts")


def _policies() -> tuple[type, type]:
    import paramiko

    class RefuseUnknown(paramiko.MissingHostKeyPolicy):
        def __init__(self, known_hosts: str) -> None:
            self.known_hosts = known_hosts

        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            raise HostKeyError(
                f"host key of {hostname} ({key.get_name()} {fingerprint(key)}) is not in "
                f"{self.known_hosts}; check the fingerprint on the board "
                "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and rerun with "
                "--accept-new-host-key to trust it"
            )

    class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
        """Accept a host never seen before and append it to the named known_hosts file."""

        def __init__(self, known_hosts: str) -> None:
            self.known_hosts = known_hosts

        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            client.get_host_keys().add(hostname, key.get_name(), key)
            path = Path(self.known_hosts)
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # Append, never rewrite: the user's other entries stay as they wrote them.
                with open(path, "a", encoding="utf-8") as f:
                    f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            except OSError as err:
                raise HostKeyError(
                    f"cannot record the host key of {hostname} in {path}: {err.strerror or err}"
                ) from None

    return RefuseUnknown, TrustOnFirstUse


class BoardConnection:
    """One SSH session to one board. Opens on first use; ``close()`` may be called any time."""

    def __init__(
        self,
        board: Board,
        *,
        accept_new_host_key: bool = False,
        known_hosts: str | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.board = board
        self.accept_new_host_key = accept_new_host_key
        self.known_hosts = known_hosts or board.known_hosts or default_known_hosts()
        self.timeouts = timeouts or Timeouts()
        self._client: Any = None
        self._sftp: Any = None
        self._home: str | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def label(self) -> str:
        user = f"{self.board.user}@" if self.board.user else ""
        return f"{self.board.name} ({user}{self.board.host}:{self.board.port})"

    def __enter__(self) -> BoardConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return bool(transport is not None and transport.is_active())

    def open(self, deadline: float | None = None) -> BoardConnection:
        """Connect and authenticate by ``deadline`` (``time.monotonic()``; default: now plus
        ``timeouts.total``)."""
        if self.is_open:
            return self
        self.close()
        try:
            import paramiko
        except ImportError:
            raise BoardError("talking to boards needs paramiko: pip install paramiko") from None
        pkey = self._load_key()  # before any network: a bad key file is not worth a retry
        refuse, tofu = _policies()
        client = paramiko.SSHClient()
        if os.path.isfile(self.known_hosts):
            try:
                client.load_host_keys(self.known_hosts)
            except (OSError, paramiko.SSHException) as err:
                raise HostKeyError(f"cannot read known_hosts {self.known_hosts}: {err}") from None
        policy = tofu if self.accept_new_host_key else refuse
        client.set_missing_host_key_policy(policy(self.known_hosts))
        t = self.timeouts
        start = time.monotonic()
        left = max(0.1, (start + t.total if deadline is None else deadline) - start)
        limits = {name: min(getattr(t, name), left) for name in ("connect", "banner", "auth")}
        try:
            client.connect(
                self.board.host,
                port=self.board.port,
                username=self.board.user,
                pkey=pkey,
                allow_agent=self.board.agent,
                look_for_keys=pkey is None,
                timeout=limits["connect"],
                banner_timeout=limits["banner"],
                auth_timeout=limits["auth"],
                channel_timeout=t.channel,
            )
        except BaseException as err:
            transport = client.get_transport()
            spoke = bool(transport is not None and transport.remote_version)  # its banner came
            client.close()
            raise self._translate_connect_error(err, limits, spoke) from None
        self._client = client
        return self

    def _load_key(self) -> Any:
        """The board's private key (with its ``-cert.pub`` if any), or None: agent/default keys."""
        import paramiko

        key = self.board.key
        if key is None:
            return None
        where = f"{self.board.source}: key file {key} of board {self.board.name}"
        if not os.path.isfile(key):
            raise AuthError(f"{where} does not exist")
        try:
            return paramiko.PKey.from_path(key)
        except paramiko.PasswordRequiredException:
            raise AuthError(f"{where} is passphrase-protected; add it to ssh-agent") from None
        except OSError as err:
            raise AuthError(f"{where} cannot be read: {err.strerror or err}") from None
        except Exception as err:  # cryptography / paramiko refuse malformed keys many ways
            if isinstance(err, TypeError) and "password" in str(err).lower():
                raise AuthError(f"{where} is passphrase-protected; add it to ssh-agent") from None
            raise AuthError(
                f"{where} is not a private key Tandem can use (OpenSSH or PEM; RSA, ECDSA or "
                f"Ed25519): {err or type(err).__name__}"
            ) from None

    def _translate_connect_error(
        self, err: BaseException, limits: dict[str, float], spoke: bool
    ) -> BaseException:
        """Our error for what ``SSHClient.connect`` raised: transient only when retrying helps."""
        import paramiko

        where = self.label
        if isinstance(err, (TandemError, KeyboardInterrupt, SystemExit)):
            return err
        if isinstance(err, paramiko.BadHostKeyException):
            host = (
                self.board.host
                if self.board.port == 22
                else f"[{self.board.host}]:{self.board.port}"
            )
            return HostKeyError(
                f"host key of {where} CHANGED (got {fingerprint(err.key)}, known_hosts "
                f"{self.known_hosts} has {fingerprint(err.expected_key)}): refusing, this may be "
                "an attack; if the board was reflashed, remove the old key with "
                f"`ssh-keygen -R '{host}' -f {self.known_hosts}`"
            )
        if isinstance(err, paramiko.PasswordRequiredException):  # a default key (~/.ssh/id_*)
            return AuthError(f"a key for {where} is passphrase-protected; add it to ssh-agent")
        if isinstance(err, paramiko.AuthenticationException):
            if str(err) == "Authentication timeout.":  # the board did not answer in time
                return SSHTimeoutError(
                    f"{where} did not answer the authentication within {limits['auth']:.2g}s"
                )
            how = f"key {self.board.key}" if self.board.key else "default keys"
            if self.board.agent:
                how += " and ssh-agent"
            return AuthError(
                f"authentication to {where} failed with {how}; check `user` and `key` in "
                f"{self.board.source or 'the inventory'} and that the public key is in the "
                "board's ~/.ssh/authorized_keys"
            )
        if isinstance(err, (socket.timeout, TimeoutError)):
            return SSHTimeoutError(
                f"connecting to {where} timed out after {limits['connect']:.2g}s; "
                "is the board on and reachable?"
            )
        if isinstance(err, paramiko.ssh_exception.NoValidConnectionsError) or isinstance(
            err, ConnectionRefusedError
        ):
            return UnreachableError(
                f"connection to {where} refused; is sshd running on the board and is the port "
                "right?"
            )
        if isinstance(err, socket.gaierror):
            text = f"cannot resolve host {self.board.host!r} of {where}"
            # Only a resolver that could not answer now is worth asking again; a name it
            # does not know stays unknown.
            return UnreachableError(text) if err.errno == socket.EAI_AGAIN else BoardError(text)
        if isinstance(err, OSError):
            return UnreachableError(f"cannot reach {where}: {err.strerror or err}")
        if isinstance(err, EOFError):
            return TransientError(f"{where} closed the connection during the handshake")
        if isinstance(err, paramiko.SSHException):
            return self._translate_ssh_exception(err, limits, spoke)
        return BoardError(f"connecting to {where} failed: {type(err).__name__}: {err}")

    def _translate_ssh_exception(
        self, err: Exception, limits: dict[str, float], spoke: bool
    ) -> BoardError:
        """paramiko raises SSHException for everything; its texts tell the transient cases."""
        where, text = self.label, str(err)
        no_banner = "Error reading SSH protocol banner"
        if text.startswith(no_banner) and text != no_banner:  # with the socket error after it
            return TransientError(
                f"{where} dropped the connection before its banner: {text[len(no_banner) :]}"
            )
        # A banner read that timed out or met EOF (paramiko drops which), or a handshake that
        # outlived the connect timeout (paramiko then finds "no session").
        if text == no_banner or (text == "No existing session" and not spoke):
            waited = limits["banner" if text == no_banner else "connect"]
            return SSHTimeoutError(
                f"{where} did not send an SSH banner within {waited:.2g}s; "
                "is it an SSH server, and not overloaded?"
            )
        if text == "No existing session":
            return SSHTimeoutError(
                f"{where} did not complete the SSH handshake within {limits['connect']:.2g}s"
            )
        if text == "Negotiation failed.":
            return TransientError(f"{where} closed the connection during the handshake")
        return BoardError(f"SSH negotiation with {where} failed: {text}")

    def close(self) -> None:
        sftp, client = self._sftp, self._client
        self._sftp = self._client = None
        for thing in (sftp, client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # closing a dead connection may fail; it is closed either way
                    pass

    # ----------------------------------------------------------------- commands
    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the board (quoted with ``shlex.join``) and collect its output."""
        command = self._command(argv)
        self.open()
        limit = self.timeouts.command if timeout is None else timeout
        start = time.monotonic()
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            channel = self._client.get_transport().open_session(timeout=self.timeouts.channel)
            channel.settimeout(self.timeouts.channel)
            channel.exec_command(command)
            channel.shutdown_write()
            while True:
                busy = False
                if channel.recv_ready():
                    out.append(channel.recv(1 << 16))
                    busy = True
                if channel.recv_stderr_ready():
                    err.append(channel.recv_stderr(1 << 16))
                    busy = True
                if not busy and channel.exit_status_ready():
                    if not channel.recv_ready() and not channel.recv_stderr_ready():
                        break
                if not busy:
                    if not self.is_open:
                        raise EOFError("connection lost")
                    if time.monotonic() - start > limit:
                        channel.close()
                        raise SSHTimeoutError(
                            f"`{command}` on {self.label} did not finish within {limit:g}s"
                        )
                    time.sleep(0.005)
            rc = channel.recv_exit_status()
            channel.close()
            if rc == -1 and self._dropped():
                raise EOFError("connection lost")  # no exit status: the board went away
        except TandemError:
            raise
        except BaseException as exc:
            raise self._transfer_error(exc, f"running `{command}`") from None
        result = CommandResult(
            tuple(argv),
            rc,
            b"".join(out).decode("utf-8", "replace"),
            b"".join(err).decode("utf-8", "replace"),
            time.monotonic() - start,
        )
        if check and rc != 0:
            tail = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise RemoteCommandError(
                f"`{command}` failed on {self.label} with exit code {rc}: {tail}", result
            )
        return result

    def _dropped(self, wait: float = 1.0) -> bool:
        """Whether the session died. paramiko closes a dead session's channels (which then
        report exit status -1) a moment before it marks the transport inactive."""
        end = time.monotonic() + wait
        while self.is_open:
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True

    def _command(self, argv: Sequence[str]) -> str:
        """``argv`` as one shell line; a NUL cannot travel in it (C strings end there)."""
        for arg in argv:
            if "\0" in arg:
                raise BoardError(
                    f"cannot run a command on {self.label} with a NUL character in {arg!r}; "
                    "check the paths in the inventory"
                )
        return shlex.join(argv)

    @contextmanager
    def hold(self, argv: Sequence[str]) -> Iterator[str]:
        """Keep ``argv`` running on the board for the duration of the block (a lock holder)
        and yield the first line it prints. Leaving the block closes its stdin, which should
        end it; so does a dropped connection, on the board's side."""
        command = self._command(argv)
        self.open()
        channel: Any = None
        try:
            channel = self._client.get_transport().open_session(timeout=self.timeouts.channel)
            channel.settimeout(self.timeouts.channel)
            channel.exec_command(command)
            line = b""
            while not line.endswith(b"\n"):
                chunk = channel.recv(256)
                if not chunk:
                    break
                line += chunk
        except BaseException as exc:
            if channel is not None:
                channel.close()
            raise self._transfer_error(exc, f"running `{command}`") from None
        if not line:  # it ended without a word: say why
            rc = channel.recv_exit_status()
            why = channel.makefile_stderr("rb").read().decode("utf-8", "replace").strip()
            channel.close()
            raise RemoteCommandError(
                f"`{command}` failed on {self.label} with exit code {rc}: {why[-2000:]}",
                CommandResult(tuple(argv), rc, "", why, 0.0),
            )
        try:
            yield line.decode("utf-8", "replace").strip()
        finally:
            try:
                channel.shutdown_write()
            except Exception:  # the connection is gone; the board ends the command itself
                pass
            channel.close()

    def _transfer_error(self, exc: BaseException, doing: str) -> BaseException:
        """A failure mid-session is transient when the connection died, else a board error."""
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return exc
        if not self.is_open or isinstance(exc, (EOFError, ConnectionError, socket.timeout)):
            self.close()
            return TransientError(f"connection to {self.label} dropped while {doing} ({exc!r})")
        if isinstance(exc, OSError):
            return BoardError(f"{doing} on {self.label} failed: {exc.strerror or exc}")
        return BoardError(f"{doing} on {self.label} failed: {exc}")

    # ----------------------------------------------------------------- files
    def sftp(self) -> Any:
        self.open()
        if self._sftp is None:
            try:
                self._sftp = self._client.open_sftp()
                self._sftp.get_channel().settimeout(self.timeouts.channel)
            except BaseException as exc:
                raise self._transfer_error(exc, "opening SFTP") from None
        return self._sftp

    def home(self) -> str:
        if self._home is None:
            try:
                self._home = str(self.sftp().normalize("."))
            except TandemError:
                raise
            except BaseException as exc:
                raise self._transfer_error(exc, "finding the home directory") from None
        return self._home

    def resolve(self, path: str) -> str:
        """An absolute remote path: ``~`` and relative paths are taken from the login's home."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return f"{self.home().rstrip('/')}/{path[2:]}"
        if path.startswith("/"):
            return path
        return f"{self.home().rstrip('/')}/{path}"

    def put(
        self,
        local: str | os.PathLike[str],
        remote: str,
        callback: Callable[[int, int], None] | None = None,
    ) -> int:
        """Upload a file; returns its size. ``callback(sent, total)`` reports progress."""
        try:
            attrs = self.sftp().put(os.fspath(local), remote, callback=callback, confirm=True)
        except TandemError:
            raise
        except BaseException as exc:
            raise self._transfer_error(exc, f"uploading {local} to {remote}") from None
        return int(attrs.st_size or 0)

    def get(self, remote: str, local: str | os.PathLike[str]) -> int:
        """Download to a temp file beside ``local``, renamed over it once complete: an
        interrupted download never leaves a partial file under the final name."""
        final = os.fspath(local)
        try:
            fd, part = tempfile.mkstemp(
                prefix=f".{os.path.basename(final)}.", suffix=".part", dir=os.path.dirname(final)
            )
            os.close(fd)
        except OSError as err:
            raise BoardError(f"cannot write {final}: {err.strerror or err}") from None
        try:
            self.sftp().get(remote, part)
            os.replace(part, final)
        except BaseException as exc:
            try:
                os.unlink(part)
            except OSError:
                pass
            if isinstance(exc, TandemError):
                raise
            raise self._transfer_error(exc, f"downloading {remote}") from None
        return os.path.getsize(final)

    def sha256(self, remote: str) -> str | None:
        """``sha256sum`` of a remote file computed on the board; None when it does not exist."""
        # A constant script; the path travels as a positional argument, quoted by shlex.join.
        # The file comes on stdin: named as an argument, sha256sum escapes a path holding a
        # backslash or newline and marks its line with a leading backslash.
        script = 'if [ -f "$1" ]; then sha256sum < "$1"; else echo missing; fi'
        result = self.run(["sh", "-c", script, "sh", remote])
        words = result.stdout.split()
        if words[:1] == ["missing"]:
            return None
        if not words or not re.fullmatch(r"[0-9a-fA-F]{64}", words[0]):
            raise BoardError(f"unexpected sha256sum output on {self.label}: {result.stdout!r}")
        return words[0].lower()
