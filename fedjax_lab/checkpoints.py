"""Experiment checkpoints on disk, through orbax-checkpoint.

A checkpoint is one pytree (the algorithm state with every per-client state, the root PRNG
key data, counters) saved under ``<workdir>/checkpoints/<round>``. Orbax writes each one into
a temporary directory and renames it when complete, so a run killed at any moment leaves only
whole checkpoints behind; the newest ``keep`` are kept.
"""

from __future__ import annotations

import pathlib
from typing import Any

import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores experiment pytrees by round number.

    Args:
      directory: where the checkpoints live (created if missing).
      keep: how many of the newest checkpoints to keep, ``>= 1``.
    """

    def __init__(self, directory: str | pathlib.Path, keep: int):
        if keep < 1:
            raise ValueError(f"Expected keep >= 1 checkpoints, got {keep!r}.")
        self.directory = pathlib.Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def save(self, round_index: int, tree: Any) -> None:
        """Starts saving ``tree`` as the checkpoint of ``round_index`` (asynchronously)."""
        self._manager.save(round_index, args=ocp.args.StandardSave(tree))

    def latest_round(self) -> int | None:
        """The newest complete checkpoint's round, or None when there is none."""
        return self._manager.latest_step()

    def restore(self, round_index: int, like: Any) -> Any:
        """The checkpoint of ``round_index``, with the structure and dtypes of ``like``."""
        return self._manager.restore(round_index, args=ocp.args.StandardRestore(like))

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
