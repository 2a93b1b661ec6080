"""Resumable runs, NaN handling, TensorBoard records and config files."""

import json
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from fedjax_lab.specs import config as config_lib
from fedjax_lab import data
from fedjax_lab import models
from fedjax_lab import pretrained
from fedjax_lab import specs
from fedjax_lab import topology
from fedjax_lab.pretrained import make
from fedjax_lab.runner import checkpoints
from fedjax_lab.runner import experiment
from fedjax_lab.runner import records
from tests.helpers.configs import RESUMABLE_OVERRIDES
from tests.helpers.configs import resumable_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def cli(*args):
    command = [sys.executable, "-m", "fedjax_lab.runner.cli", *args]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_after_checkpoint(process, workdir, round_index):
    """SIGKILLs ``process`` once ``workdir`` holds a checkpoint of ``round_index`` or later."""
    deadline = time.monotonic() + 300
    while not any(
        p.name.isdigit() and int(p.name) >= round_index for p in (workdir / "checkpoints").glob("*")
    ):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (workdir / "summary.json").exists()


def test_killed_run_resumes_to_the_same_fingerprint(tmp_path):
    flags = ["--rounds", "40", "--set", "algorithm=dfedsam"]
    for item in RESUMABLE_OVERRIDES:
        flags += ["--set", item]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert cli("run", "--workdir", str(straight), *flags).wait(timeout=300) == 0

    kill_after_checkpoint(cli("run", "--workdir", str(killed), *flags), killed, 10)

    assert cli("run", "--workdir", str(killed), "--resume").wait(timeout=300) == 0
    a = json.loads((straight / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert b["resumed_from"] >= 10
    assert a["params_sha256"] == b["params_sha256"]
    assert records.load_metrics(straight) == records.load_metrics(killed)


def test_resume_refuses_a_different_config(tmp_path):
    experiment.run(resumable_config(rounds=2), tmp_path)
    with pytest.raises(ValueError, match="sam.rho: stored 0.05, given 0.5"):
        experiment.run(resumable_config({"sam.rho": 0.5}, rounds=2), tmp_path, resume=True)
    with pytest.raises(FileNotFoundError, match="Nothing to resume"):
        experiment.run(resumable_config(rounds=2), tmp_path / "empty", resume=True)
    # Resuming a finished run changes nothing.
    first = json.loads((tmp_path / "summary.json").read_text())
    again = experiment.run(resumable_config(rounds=2, progress=True), tmp_path, resume=True)
    assert again["params_sha256"] == first["params_sha256"]
    assert again["resumed_from"] == 2


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    config = resumable_config(
        {"local.learning_rate": 100.0}, rounds=30, checkpoint_every=1, eval_every=1
    )
    with pytest.raises(FloatingPointError, match=r"in round (\d+).*last good checkpoint") as info:
        experiment.run(config, tmp_path)
    bad_round = int(re.search(r"in round (\d+)", str(info.value)).group(1))
    ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints", keep=2)
    last = ckpt.latest_round()
    assert last == bad_round - 1
    exp = experiment.build(config)
    like = experiment._checkpoint_tree(exp.initial_state, exp.root, 0, ())
    restored = ckpt.restore(last, like)
    ckpt.close()
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored["state"].params))
    assert int(restored["state"].round) == last


def test_tensorboard_events_are_written(tmp_path):
    experiment.run(resumable_config(rounds=3), tmp_path)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    raw = events[0].read_bytes()
    for tag in (b"test_accuracy", b"consensus_distance", b"bytes_communicated"):
        assert tag in raw


def test_truncated_metrics_line_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"round": 1, "x": 1.0}\n{"round": 2, "x": 2.0}\n{"round": 3, "x"')
    assert [r["round"] for r in records.load_metrics(tmp_path)] == [1, 2]


CONFIG_FILES = [
    p for p in sorted((REPO / "experiments").glob("*.py")) if "def get_config" in p.read_text()
]


def test_there_are_experiment_config_files():
    assert len(CONFIG_FILES) >= 3


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_experiment_config_files_are_valid(path):
    c = config_lib.resolve(config_lib.load_config_file(path))
    assert c.algorithm in specs.available_algorithms()
    assert c.dataset in data.available_datasets()
    if c.model == "pretrained":  # a shipped model, or one its recipe makes
        assert c.zo.model in (*pretrained.available(), *make.RECIPES)
    else:
        assert c.model in models.available_models()
    assert c.communication.topology in topology.available_topologies()


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from fedjax_lab.specs import config\n"
        "def get_config():\n"
        "    c = config.get_config()\n"
        "    c.local.lerning_rate = 0.3\n"
        "    return c\n"
    )
    with pytest.raises(
        ValueError, match="'local.lerning_rate'. Did you mean 'local.learning_rate'"
    ):
        config_lib.load_config_file(bad)
    with pytest.raises(FileNotFoundError, match="No config file"):
        config_lib.load_config_file(tmp_path / "missing.py")


def test_checkpoints_can_be_switched_off(tmp_path):
    experiment.run(resumable_config(rounds=3, checkpoint_every=0), tmp_path)
    assert not list((tmp_path / "checkpoints").glob("*"))
    with pytest.raises(ValueError, match="checkpoint_every >= 0"):
        experiment.run(resumable_config(checkpoint_every=-1), tmp_path / "other")


def test_build_gives_a_steppable_experiment():
    exp = experiment.build(resumable_config(rounds=2))
    state, metrics = exp.train_round(exp.initial_state, 0)
    assert int(state.round) == 1 and np.isfinite(float(metrics["train_loss"]))
    evaluated = exp.evaluate(state)
    assert 0.0 <= evaluated["test_accuracy"] <= 1.0
    assert exp.topology.name == "ring"
    logits = exp.apply_fn(jax.tree.map(lambda x: x[0], state.params), exp.dataset.test.x[0])
    assert logits.shape == (exp.dataset.test.x.shape[1], 10)


def test_an_algorithms_metrics_bytes_and_host_hook_reach_the_records(tmp_path):
    from tests.helpers import toy_algorithm

    toy_algorithm.ensure_registered()
    summary = experiment.run(toy_algorithm.small_config(rounds=3), tmp_path)
    lines = records.load_metrics(tmp_path)
    assert [l["host_rounds"] for l in lines] == [1, 2, 3]
    for line in lines:
        assert line["toy_metric"] == pytest.approx(2 * line["train_loss"])
        assert line["seeds_sent"] == 6
    exp = experiment.build(toy_algorithm.small_config())
    per_round = 4 * exp.message_bytes["models_sent"] + 6 * toy_algorithm.SEED_BYTES
    assert exp.message_bytes["seeds_sent"] == toy_algorithm.SEED_BYTES
    assert [l["bytes_communicated"] for l in lines] == [per_round * r for r in (1, 2, 3)]
    assert summary["host_loss_sum"] == pytest.approx(sum(l["train_loss"] for l in lines))


def test_a_host_hooks_state_survives_kill_and_resume(tmp_path):
    def toy(workdir, *flags):
        command = [
            sys.executable, "-m", "tests.helpers.toy_algorithm", str(workdir), "60", *flags
        ]
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert toy(straight).wait(timeout=300) == 0
    kill_after_checkpoint(toy(killed), killed, 5)
    assert toy(killed, "--resume").wait(timeout=300) == 0
    a = json.loads((straight / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert b["resumed_from"] >= 5 and a["host_rounds"] == b["host_rounds"] == 60
    assert a["host_loss_sum"] == b["host_loss_sum"]
    assert records.load_metrics(straight) == records.load_metrics(killed)
