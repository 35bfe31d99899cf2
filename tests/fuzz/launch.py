"""Run ``python -m tandem ARGV`` under an address-space cap and report its own peak RSS.

    python tests/fuzz/launch.py CAP_BYTES REPORT_FILE ARGV...

Why a launcher: on Linux a process's ``ru_maxrss`` keeps the high-water mark of the memory it
was forked from (the kernel carries it across fork and exec), so a child of a 1 GiB pytest
process reports at least 1 GiB whatever it does. This small process forks the CLI instead, so
the figure written to REPORT_FILE is the CLI's own (plus this launcher's few MiB). Its exit
status is the CLI's: the same code, or death by the same signal.
"""

from __future__ import annotations

import os
import resource
import signal
import sys


def main() -> None:
    cap, report, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    pid = os.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "tandem", *argv])
    _, status, usage = os.wait4(pid, 0)
    with open(report, "w", encoding="utf-8") as f:
        f.write(f"{usage.ru_maxrss}\n")  # KiB on Linux
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed: die the same way, so the fuzzer sees the signal
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
