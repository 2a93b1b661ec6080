"""One run per workdir at a time: a file lock with its holder recorded.

While a run is active, ``<workdir>/lock`` is held with ``fcntl.flock`` (an exclusive lock
the operating system releases when the process ends, however it ends) and holds the
holder's pid, host and start time as JSON. A second process trying the same workdir is
refused with one line naming the holder. A lock file whose lock nobody holds (its process
is gone: killed, preempted) is stale; the next run takes it over with a one-line notice.
In a multi-process run, process 0 holds the lock for all of them.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import socket
import sys
import time

LOCK_NAME = "lock"


class WorkdirBusy(RuntimeError):
    """The workdir's lock is held by another live process."""


def _notice(message: str) -> None:
    print(f"fedjax-lab: {message}", file=sys.stderr, flush=True)


class WorkdirLock:
    """The lock of one workdir (a context manager: acquired on enter, released on exit).

    Args:
      workdir: the run directory (created if missing).
    """

    def __init__(self, workdir: str | os.PathLike):
        self.path = pathlib.Path(workdir) / LOCK_NAME
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            info = {}
        if not info:
            return "an unknown process"
        return f"pid {info.get('pid')} on host {info.get('host')} (since {info.get('since')})"

    def acquire(self) -> None:
        """Takes the lock, or raises :class:`WorkdirBusy` naming its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirBusy(
                f"{self.path.parent} is in use by {self._holder()}; wait for that run to end "
                "or stop it, or choose another --workdir."
            ) from None
        if os.fstat(fd).st_size:
            _notice(f"took over the stale lock of {self._holder()}: that process is gone.")
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Empties the lock file and releases the lock (a no-op when not held)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "WorkdirLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
