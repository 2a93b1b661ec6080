"""The metrics a run writes: ``metrics.jsonl`` and TensorBoard event files.

``metrics.jsonl`` holds one JSON object per evaluated round, appended and flushed as the
run goes. TensorBoard events go to ``<workdir>/tensorboard`` through tensorboardX (no
TensorFlow needed). When a run resumes from the checkpoint of round ``r``, records of later
rounds (written after that checkpoint, before the interruption) are dropped from both, so a
resumed run's records read as if it had never stopped.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import tensorboardX


def load_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads the per-round records of a run.

    A last line that is not a complete JSON object (a run killed while writing it) is
    skipped; a damaged line anywhere else is an error.

    Args:
      workdir: A run's workdir, holding ``metrics.jsonl``.

    Returns:
      One dict per evaluated round, in file order (keys ``round``, ``test_accuracy``,
      ``averaged_model_accuracy``, ``train_loss``, ``consensus_distance``,
      ``bytes_communicated``).

    Raises:
      FileNotFoundError: If ``workdir/metrics.jsonl`` does not exist.
      ValueError: If a line other than the last is not a JSON object.
    """
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"No run records at {path}: expected the metrics.jsonl that experiment.run "
            f"writes into its workdir {str(workdir)!r}."
        )
    lines = [
        (number, line)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip()
    ]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif index == len(lines) - 1:
            break  # truncated by a run killed mid-write
        else:
            raise ValueError(
                f"{path} line {number} is not a JSON object: {line[:80]!r}"
                f"{'...' if len(line) > 80 else ''}."
            )
    return records


class MetricsWriter:
    """Appends evaluation records to ``metrics.jsonl`` and TensorBoard.

    Args:
      workdir: the run directory.
      resume_round: when resuming, the round of the restored checkpoint: records of later
        rounds are removed first. ``None`` for a fresh run.
    """

    def __init__(self, workdir: pathlib.Path, resume_round: int | None = None):
        self._path = workdir / "metrics.jsonl"
        purge_step = None
        if resume_round is not None and self._path.exists():
            kept = [r for r in load_metrics(workdir) if r["round"] <= resume_round]
            tmp = self._path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            os.replace(tmp, self._path)
            purge_step = resume_round + 1
        self._file = open(self._path, "a")
        self._tensorboard = tensorboardX.SummaryWriter(
            str(workdir / "tensorboard"), purge_step=purge_step
        )

    def write(self, record: dict[str, Any]) -> None:
        """Appends one record (it must hold ``round``); numbers also go to TensorBoard."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for key, value in record.items():
            if key != "round":
                self._tensorboard.add_scalar(key, value, global_step=record["round"])
        self._tensorboard.flush()

    def close(self) -> None:
        self._file.close()
        self._tensorboard.close()


class NullWriter:
    """A :class:`MetricsWriter` that writes nothing: the other processes of a multi-process
    run, where only process 0 keeps the records."""

    def write(self, record: dict[str, Any]) -> None:
        del record

    def close(self) -> None:
        pass
