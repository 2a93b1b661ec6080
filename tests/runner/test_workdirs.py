"""Runs a researcher can trust: extending, the workdir lock, verified checkpoints,
graceful stop and failed saves."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab.runner import checkpoints
from fedjax_lab.runner import cli
from fedjax_lab.runner import experiment
from fedjax_lab.runner import locking
from fedjax_lab.runner import records
from tests.helpers.configs import RESUMABLE_OVERRIDES
from tests.helpers.configs import resumable_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def summary(workdir):
    return json.loads((workdir / "summary.json").read_text())


def run_cli(*args):
    return cli.main(["run", *args])


def test_a_finished_run_extends_to_more_rounds(tmp_path, capsys):
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    c = dict(eval_every=2, checkpoint_every=3)
    experiment.run(resumable_config(rounds=10, **c), straight)
    experiment.run(resumable_config(rounds=6, **c), extended)
    flags = ["--workdir", str(extended), "--resume"]
    assert run_cli(*flags, "--rounds", "10") == 0
    assert summary(extended)["params_sha256"] == summary(straight)["params_sha256"]
    assert summary(extended)["resumed_from"] == 6
    assert records.load_metrics(extended) == records.load_metrics(straight)
    assert json.loads((extended / "config.json").read_text())["rounds"] == 10
    capsys.readouterr()
    assert run_cli(*flags, "--rounds", "4") == 2
    err = capsys.readouterr().err
    assert "has done 10 rounds; to resume it, rounds must be at least 10, got 4" in err
    assert len(err.strip().splitlines()) == 1


def hold_lock(workdir):
    script = (
        "import sys, time\n"
        "from fedjax_lab.runner import locking\n"
        "lock = locking.WorkdirLock(sys.argv[1]); lock.acquire()\n"
        "print('held', flush=True); time.sleep(120)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(workdir)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_live_workdir_is_refused_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    workdir = tmp_path / "run"
    holder = hold_lock(workdir)
    try:
        flags = ["--workdir", str(workdir), "--clients", "6", "--rounds", "1"]
        assert run_cli(*flags, "--set", "progress=false") == 2
        err = capsys.readouterr().err
        assert f"is in use by pid {holder.pid} on host" in err and len(err.splitlines()) == 1
        assert not (workdir / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale and the next run takes it over.
    assert json.loads((workdir / "lock").read_text())["pid"] == holder.pid
    experiment.run(resumable_config(rounds=1), workdir)
    assert f"took over the stale lock of pid {holder.pid}" in capsys.readouterr().err
    assert (workdir / "lock").read_text() == ""  # released


def test_the_lock_refuses_a_second_holder_in_the_same_process(tmp_path):
    with locking.WorkdirLock(tmp_path):
        with pytest.raises(locking.WorkdirBusy, match=f"pid {os.getpid()}"):
            locking.WorkdirLock(tmp_path).acquire()
    locking.WorkdirLock(tmp_path).acquire()  # released on exit


def finished_run(tmp_path):
    straight = tmp_path / "straight"
    experiment.run(
        resumable_config(rounds=6, eval_every=2, checkpoint_every=2, keep_checkpoints=3), straight
    )
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == ["2", "4", "6"]
    return straight


def overwrite_data_files(checkpoint):
    rng = np.random.default_rng(0)
    damaged = 0
    for path in (checkpoint / "state").rglob("*"):
        if path.is_file() and path.name != checkpoints.COMMIT_MARKER:
            path.write_bytes(rng.bytes(max(path.stat().st_size, 16)))
            damaged += 1
    assert damaged


@pytest.mark.parametrize("damage", ["data", "marker"])
def test_resume_skips_a_damaged_newest_checkpoint(tmp_path, capsys, damage):
    straight = finished_run(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(straight, copy)
    newest = copy / "checkpoints" / "6"
    if damage == "data":
        overwrite_data_files(newest)
    else:
        (newest / checkpoints.COMMIT_MARKER).unlink()
    capsys.readouterr()
    assert run_cli("--workdir", str(copy), "--resume", "--set", "progress=false") == 0
    err = capsys.readouterr().err
    warnings = [l for l in err.splitlines() if "skipping the checkpoint of round 6" in l]
    assert len(warnings) == 1, err
    if damage == "marker":
        assert "incomplete (no commit marker)" in warnings[0]
    assert "Traceback" not in err
    assert summary(copy)["resumed_from"] == 4
    assert summary(copy)["params_sha256"] == summary(straight)["params_sha256"]
    assert records.load_metrics(copy) == records.load_metrics(straight)
    assert any((copy / "checkpoints_skipped").iterdir())  # set aside, not deleted


def test_no_intact_checkpoint_is_one_line_suggesting_overwrite(tmp_path, capsys):
    straight = finished_run(tmp_path)
    for round_index in (2, 4, 6):
        overwrite_data_files(straight / "checkpoints" / str(round_index))
    capsys.readouterr()
    assert run_cli("--workdir", str(straight), "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("fedjax-lab: error: No intact checkpoint") and "--overwrite" in err[-1]
    )
    assert len(err) == 4  # three warnings, one error


def test_a_checkpoint_whose_fingerprint_differs_is_skipped(tmp_path):
    directory = tmp_path / "checkpoints"
    tree = {"a": jnp.arange(4.0), "n": np.asarray(3, np.int64)}
    saver = checkpoints.Checkpointer(directory, keep=3)
    saver.save(1, tree)
    saver.save(2, {"a": jnp.arange(4.0) + 1, "n": np.asarray(4, np.int64)})
    saver.close()
    record = directory / "2" / "fingerprint" / "metadata"
    stored = json.loads(record.read_text())
    stored["sha256"] = "0" * 64
    record.write_text(json.dumps(stored))
    warnings = []
    reader = checkpoints.Checkpointer(directory, keep=3, warn=warnings.append)
    round_index, restored = reader.restore_latest(tree)
    reader.close()
    assert round_index == 1 and float(restored["a"][1]) == 1.0
    assert warnings == [
        "skipping the checkpoint of round 2: its state does not match its recorded fingerprint."
    ]


def test_a_save_that_fails_half_way_leaves_the_older_checkpoints(tmp_path, monkeypatch):
    directory = tmp_path / "checkpoints"
    tree = {"a": jnp.arange(4.0), "n": np.asarray(3, np.int64)}
    saver = checkpoints.Checkpointer(directory, keep=3)
    saver.save(2, tree)
    saver.wait()
    # The state is written, then recording its fingerprint fails.
    monkeypatch.setattr(checkpoints, "_fingerprint", lambda t: object())
    with pytest.raises(checkpoints.SaveFailed, match="checkpoints saved before it are intact"):
        saver.save(4, {"a": jnp.arange(4.0) + 1, "n": np.asarray(4, np.int64)})
        saver.close()
    monkeypatch.undo()
    assert not saver.is_complete(4)
    reader = checkpoints.Checkpointer(directory, keep=3)
    round_index, restored = reader.restore_latest(tree)
    reader.close()
    assert round_index == 2
    np.testing.assert_array_equal(np.asarray(restored["a"]), np.arange(4.0))


def test_sigterm_saves_the_last_round_and_the_run_resumes(tmp_path):
    flags = ["--rounds", "40"] + [a for item in RESUMABLE_OVERRIDES for a in ("--set", item)]
    flags += ["--set", "checkpoint_every=100"]  # only the graceful stop saves before the end

    def start(workdir, *more):
        command = [sys.executable, "-m", "fedjax_lab.runner.cli", "run", "--workdir", str(workdir)]
        return subprocess.Popen(
            [*command, *flags, *more],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert start(straight).wait(timeout=300) == 0
    process = start(stopped)
    deadline = time.monotonic() + 300
    while not (stopped / "metrics.jsonl").exists() or not records.load_metrics(stopped):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM
    last = err.strip().splitlines()[-1]
    assert "SIGTERM: stopped after round" in last and "--resume" in last, err
    assert "Traceback" not in err
    done = int(last.split("after round ")[1].split()[0])
    assert 3 <= done < 40
    assert (stopped / "checkpoints" / str(done) / checkpoints.COMMIT_MARKER).exists()
    assert (stopped / "lock").read_text() == ""
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedjax_lab.runner.cli",
            "run",
            "--workdir",
            str(stopped),
            "--resume",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert summary(stopped)["resumed_from"] == done
    assert summary(stopped)["params_sha256"] == summary(straight)["params_sha256"]
    assert records.load_metrics(stopped) == records.load_metrics(straight)
