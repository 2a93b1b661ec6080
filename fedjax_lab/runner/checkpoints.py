"""Experiment checkpoints on disk, through orbax-checkpoint, verified on restore.

A checkpoint is one pytree (the algorithm state with every per-client state, the root PRNG
key data, counters, the host hook's state) saved under ``<workdir>/checkpoints/<round>``,
together with the sha256 fingerprint of that pytree
(:func:`fedjax_lab.runner.fingerprints.params_fingerprint`). The newest ``keep`` are kept.

* **Atomic saves.** Orbax writes each checkpoint into a temporary directory, renames it
  when it is complete and then writes its commit marker (``commit_success.txt``); a save
  that fails half-way, or a process killed during one, leaves the older checkpoints as they
  were.
* **Verified restores.** :meth:`Checkpointer.restore_latest` takes the newest checkpoint
  that has its commit marker, restores it and compares its fingerprint with the recorded
  one. A checkpoint that is incomplete, unreadable or whose fingerprint differs is skipped
  with a one-line warning and moved to ``<workdir>/checkpoints_skipped/`` (nothing is
  deleted), and the next older one is tried. When none is intact, :class:`NoIntactCheckpoint`
  says so in one line.
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from fedjax_lab import sharding
from fedjax_lab import validation
from fedjax_lab.runner import fingerprints

COMMIT_MARKER = "commit_success.txt"


class NoIntactCheckpoint(RuntimeError):
    """Checkpoints exist but none of them can be restored intact."""


class SaveFailed(RuntimeError):
    """A checkpoint could not be written; the checkpoints before it are intact."""


def _warn(message: str) -> None:
    print(f"fedjax-lab: warning: {message}", file=sys.stderr, flush=True)


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {validation.one_line(error, limit=200)}"


class Checkpointer:
    """Saves and restores experiment pytrees by round number.

    Args:
      directory: where the checkpoints live (created if missing).
      keep: how many of the newest checkpoints to keep, ``>= 1``.
      warn: where one-line warnings about skipped checkpoints go (stderr by default).
    """

    def __init__(
        self,
        directory: str | pathlib.Path,
        keep: int,
        warn: Callable[[str], None] = _warn,
    ):
        if keep < 1:
            raise ValueError(f"Expected keep >= 1 checkpoints, got {keep!r}.")
        self.directory = pathlib.Path(directory).absolute()
        self._warn = warn
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def save(self, round_index: int, tree: Any) -> None:
        """Starts saving ``tree`` and its fingerprint as the checkpoint of ``round_index``.

        The save runs in the background; :meth:`wait` or :meth:`close` waits for it. In a
        multi-process run every process calls this with its shards (the fingerprint is
        taken over the gathered values).
        """
        record = {"round": int(round_index), "sha256": _fingerprint(tree)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(tree), fingerprint=ocp.args.JsonSave(record)
        )
        self._guarded(lambda: self._manager.save(round_index, args=args))

    def wait(self) -> None:
        """Waits until every save started so far is on disk, commit marker included.

        Raises:
          SaveFailed: a save failed (the older checkpoints are left as they were).
        """
        self._guarded(self._manager.wait_until_finished)

    def _guarded(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as error:  # pylint: disable=broad-except
            raise SaveFailed(
                f"Saving a checkpoint in {self.directory} failed ({_described(error)}); the "
                "checkpoints saved before it are intact, and --resume continues from the newest."
            ) from error

    def rounds(self) -> list[int]:
        """The rounds of every checkpoint directory, complete or not, oldest first."""
        return sorted(int(p.name) for p in self.directory.glob("*") if p.name.isdigit())

    def is_complete(self, round_index: int) -> bool:
        """Whether the checkpoint of ``round_index`` has its commit marker."""
        return (self.directory / str(round_index) / COMMIT_MARKER).is_file()

    def latest_round(self) -> int | None:
        """The newest checkpoint with a commit marker, or None (not verified: see
        :meth:`restore_latest`)."""
        complete = [r for r in self.rounds() if self.is_complete(r)]
        return complete[-1] if complete else None

    def restore(self, round_index: int, like: Any) -> Any:
        """The checkpoint of ``round_index``, with the structure and dtypes of ``like``,
        after checking its fingerprint.

        Raises:
          ValueError: the checkpoint is incomplete or its fingerprint differs.
          Exception: whatever orbax raises on unreadable data.
        """
        if not self.is_complete(round_index):
            raise ValueError("incomplete (no commit marker)")
        restored = self._manager.restore(
            round_index,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(like), fingerprint=ocp.args.JsonRestore()
            ),
        )
        expected = (restored.fingerprint or {}).get("sha256")
        if expected != _fingerprint(restored.state):
            raise ValueError("its state does not match its recorded fingerprint")
        return restored.state

    def restore_latest(self, like: Any) -> tuple[int | None, Any]:
        """The newest intact checkpoint: ``(round, tree)``, or ``(None, None)`` when there
        is no checkpoint at all.

        Checkpoints newer than the one restored (each one skipped with a warning) are moved
        to ``checkpoints_skipped/`` beside the checkpoint directory, so that the run can
        save those rounds again.

        Raises:
          NoIntactCheckpoint: there are checkpoints, and none is intact.
        """
        skipped = []
        for round_index in reversed(self.rounds()):
            try:
                tree = self.restore(round_index, like)
            except Exception as error:  # pylint: disable=broad-except
                reason = str(error) if isinstance(error, ValueError) else _described(error)
                self._warn(f"skipping the checkpoint of round {round_index}: {reason}.")
                skipped.append(round_index)
                continue
            self._set_aside(skipped)
            return round_index, tree
        if skipped:
            raise NoIntactCheckpoint(
                f"No intact checkpoint in {self.directory} (skipped rounds "
                f"{', '.join(map(str, sorted(skipped)))}); start the run again with --overwrite."
            )
        return None, None

    def _set_aside(self, rounds: list[int]) -> None:
        if not rounds:
            return
        if jax.process_index() == 0:  # the one process that moves files
            self._move_aside(rounds)
        self._manager.reload()

    def _move_aside(self, rounds: list[int]) -> None:
        aside = self.directory.parent / "checkpoints_skipped"
        aside.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for round_index in rounds:
            shutil.move(str(self.directory / str(round_index)), aside / f"{round_index}-{stamp}")

    def close(self) -> None:
        """Waits for pending saves and releases the manager.

        Raises:
          SaveFailed: a pending save failed.
        """
        try:
            self.wait()
        finally:
            self._manager.close()


def _fingerprint(tree: Any) -> str:
    return fingerprints.params_fingerprint(sharding.to_host(tree))
