"""Writing files others read at the same time: atomic replacement and an exclusive lock.

At the bottom of the layering so that every package writing a file users keep (plans, ``.npz``
outputs, timing caches, calibration caches) shares one implementation. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from partitioner.errors import TandemError

#: how long a writer waits for another process's lock before it gives up, saying so
LOCK_TIMEOUT_S = 60.0


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    error: type[TandemError] = TandemError,
    durable: bool = False,
) -> Path:
    """Write ``data`` through a temporary file beside ``path``, then rename it over ``path``:
    an interrupted write never leaves a file under the final name, and a concurrent reader
    sees the old file or the new one, never part of either. ``durable`` also fsyncs the file
    and its folder (plans). A failure raises ``error("cannot write PATH: why")``."""
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise error(f"cannot write {final}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise error(f"cannot write {final}: {err.strerror or err}") from None
        raise
    if durable:  # the rename is durable only once the directory entry is on disk
        with contextlib.suppress(OSError):
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    return final


@contextlib.contextmanager
def locked(
    path: str | os.PathLike[str],
    *,
    error: type[TandemError] = TandemError,
    timeout_s: float = LOCK_TIMEOUT_S,
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the sidecar ``PATH.lock`` (created, never removed:
    removing it would let two writers lock two different files) for a read-merge-write of
    ``path``. Waits at most ``timeout_s``, then raises ``error`` naming the lock file."""
    final = Path(path)
    lock = final.with_name(final.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise error(f"cannot lock {final}: {lock}: {err.strerror or err}") from None
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise error(f"cannot lock {final}: {err.strerror or err}") from None
                if time.monotonic() > deadline:
                    raise error(
                        f"{final} stayed locked by another process for {timeout_s:.0f} s "
                        f"({lock}); wait for it to finish and try again"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
