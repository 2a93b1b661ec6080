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


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file; a truncated last line is skipped."""
    records = []
    for line in pathlib.Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by an interruption, necessarily the last one
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
            kept = [r for r in read_metrics(self._path) if r["round"] <= resume_round]
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
