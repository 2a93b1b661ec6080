"""Graceful stop: SIGTERM or SIGINT ends a run at the next round boundary, resumable.

Inside :class:`GracefulStop` the first SIGTERM (a cluster's preemption notice) or SIGINT
(Ctrl-C, a notebook's interrupt) only records the request; the run loop finishes the round
it is in, saves a checkpoint of it, flushes its records, releases its lock and raises
:class:`RunInterrupted` with the command that resumes it. A second signal exits at once
(the records are flushed as they are written, and the lock is released by the operating
system). In a multi-process run a stop requested in any process stops all of them at the
same round. Handlers are installed only in the main thread and restored on exit.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(Exception):
    """A run stopped by a signal after saving its last round.

    Attributes:
      signum: the signal that stopped it.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class GracefulStop:
    """Records SIGTERM / SIGINT while a run is in progress (a context manager)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        del frame
        if self.signum is not None:
            os._exit(128 + signum)  # the second signal: at once
        self.signum = signum
        print(
            f"\nfedjax-lab: {signal.Signals(signum).name} received: stopping after this round "
            "(send it again to stop at once).",
            file=sys.stderr,
            flush=True,
        )

    def requested(self) -> int | None:
        """The signal that asked for a stop, in any process of the run, or None.

        With several processes this is a collective: every process calls it each round.
        """
        if jax.process_count() == 1:
            return self.signum
        mine = np.asarray(self.signum or 0, np.int32)
        every = np.asarray(multihost_utils.process_allgather(mine))
        return int(every.max()) or None

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
