"""The config-driven run loop, the config overrides and the command line."""

import json

import jax
import numpy as np
import pytest

from fedjax_lab.specs import config as config_lib
from fedjax_lab import gossip as gossip_lib
from fedjax_lab.runner import cli
from fedjax_lab.runner import experiment
from tests.helpers.configs import small_config

SHORT = {"rounds": 3, "local.steps": 2, "eval_every": 2}  # on top of the small config
COHORT = {"fedavg": {"server.clients_per_round": 3}}  # a gossip round has no cohort


@pytest.mark.parametrize("algorithm", ["dfedsam", "fedavg"])
def test_run_writes_config_metrics_and_summary(tmp_path, algorithm):
    summary = experiment.run(
        small_config(SHORT, algorithm=algorithm, **COHORT.get(algorithm, {})), tmp_path
    )
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["algorithm"] == algorithm and config["num_clients"] == 6
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [l["round"] for l in lines] == [2, 3]
    for key in ("test_accuracy", "train_loss", "consensus_distance", "bytes_communicated"):
        assert key in lines[-1]
    assert lines[1]["bytes_communicated"] > lines[0]["bytes_communicated"] > 0
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert len(summary["params_sha256"]) == 64
    if algorithm == "fedavg":
        assert lines[-1]["consensus_distance"] == 0.0


def test_same_seed_same_fingerprint_other_seed_differs(tmp_path):
    a = experiment.run(small_config(SHORT), tmp_path / "a")
    b = experiment.run(small_config(SHORT), tmp_path / "b")
    c = experiment.run(small_config(SHORT, seed=1), tmp_path / "c")
    assert a["params_sha256"] == b["params_sha256"] != c["params_sha256"]


def test_existing_run_is_not_overwritten_silently(tmp_path):
    experiment.run(small_config(SHORT, rounds=1, eval_every=1), tmp_path)
    with pytest.raises(FileExistsError, match="already holds a run"):
        experiment.run(small_config(SHORT, rounds=1, eval_every=1), tmp_path)
    experiment.run(small_config(SHORT, rounds=1, eval_every=1), tmp_path, overwrite=True)


def test_config_overrides_are_typed_and_typos_named():
    c = config_lib.apply_overrides(
        config_lib.get_config(),
        ["sam.rho=0.2", "rounds=7", "sam.adaptive=true", "communication.order=x"],
    )
    assert (c.sam.rho, c.rounds, c.sam.adaptive, c.communication.order) == (0.2, 7, True, "x")
    with pytest.raises(
        ValueError, match="Unknown config key 'local.lerning_rate'.*'local.learning_rate'"
    ):
        config_lib.apply_overrides(config_lib.get_config(), ["local.lerning_rate=0.1"])
    with pytest.raises(
        ValueError, match="Unknown config key 'lerning_rate'.*'local.learning_rate'"
    ):
        config_lib.apply_overrides(config_lib.get_config(), ["lerning_rate=0.1"])
    with pytest.raises(ValueError, match="Expected a value of type int for 'rounds', got '1.5'"):
        config_lib.apply_overrides(config_lib.get_config(), ["rounds=1.5"])
    with pytest.raises(ValueError, match="key=value"):
        config_lib.apply_overrides(config_lib.get_config(), ["rounds"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--algorithm", "dfedsma"], "Unknown algorithm 'dfedsma'. Did you mean 'dfedsam'"),
        (["--dataset", "digitz"], "digitz"),
        (["--topology", "rign"], "rign"),
        (["--set", "rhoo=1"], "Unknown config key 'rhoo'"),
        (["--set", "sam.rhoo=1"], "Unknown config key 'sam.rhoo'. Did you mean 'sam.rho'"),
        (["--set", "server.learning_rate=fast"], "Expected a value of type float"),
        (
            ["--algorithm", "fedavg", "--set", "server.learning_rate=-1"],
            "Expected server.learning_rate > 0, got -1.0",
        ),
        (
            [
                *("--set", "data.partition=dirichlet_per_class"),
                *("--set", "data.alpha=0.001", "--clients", "50"),
            ],
            "Client 0 received no examples",
        ),
        (
            ["--set", "execution.shard_clients=true"],
            "Unknown config.execution.shard_clients 'true'",
        ),
        (
            ["--set", "server.clients_per_round=20", "--algorithm", "fedavg", "--clients", "8"],
            "Expected config.server.clients_per_round <= num_clients=8, got 20",
        ),
        (["--coordinator", "127.0.0.1:1"], "needs all of --coordinator, --num-processes"),
    ],
)
def test_cli_reports_bad_input(tmp_path, capsys, args, message):
    assert cli.main(["run", "--workdir", str(tmp_path / "w"), "--rounds", "1", *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_list_and_small_run(tmp_path, capsys):
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    for name in ("dfedsam_mgs", "digits", "synthetic", "resnet18", "erdos_renyi"):
        assert name in listed
    assert (
        cli.main(
            [
                "run",
                "--workdir",
                str(tmp_path),
                "--clients",
                "4",
                "--rounds",
                "2",
                "--algorithm",
                "dfedsam_mgs",
                "--topology",
                "fully_connected",
                "--set",
                "progress=false",
                "--set",
                "local.steps=2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "final mean test accuracy" in out
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["algorithm"] == "dfedsam_mgs" and config["num_clients"] == 4


@pytest.mark.slow
def test_default_run_reaches_the_promised_accuracy(tmp_path):
    """`fedjax-lab run` with no arguments: DFedSAM on digits reaches >= 0.80 mean test accuracy."""
    summary = experiment.run(config_lib.update(config_lib.get_config(), progress=False), tmp_path)
    assert summary["rounds"] == 200
    assert summary["test_accuracy"] >= 0.80, summary


@pytest.mark.parametrize(
    "topology,gossip",
    [("random_in_neighbours", "sparse"), ("one_peer_exponential", "auto"), ("torus", "dense")],
)
def test_runs_on_time_varying_and_sparse_topologies(tmp_path, topology, gossip):
    c = small_config(
        SHORT,
        **{
            "num_clients": 9,
            "communication.topology": topology,
            "communication.form": gossip,
            "communication.topology_k": 2 if topology == "random_in_neighbours" else None,
        },
    )
    summary = experiment.run(c, tmp_path)
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    expected_messages = {"random_in_neighbours": 2, "one_peer_exponential": 1, "torus": 4}[topology]
    mlp_bytes = 4 * (64 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10)  # digits MLP, float32
    assert lines[0]["bytes_communicated"] == 2 * 9 * expected_messages * mlp_bytes
    assert 0.0 <= summary["test_accuracy"] <= 1.0


@pytest.mark.parametrize(
    "topology,gossip,form",
    [
        ("ring", "auto", gossip_lib.CirculantMixing),
        ("ring", "sparse", gossip_lib.SparseMixing),
        ("torus", "auto", gossip_lib.SparseMixing),  # sparse, not circulant
        ("fully_connected", "auto", jax.Array),
    ],
)
def test_gossip_auto_picks_the_mixing_form(topology, gossip, form):
    exp = experiment.build(
        small_config(
            SHORT,
            **{"num_clients": 64, "communication.topology": topology, "communication.form": gossip},
        )
    )
    assert isinstance(exp._mixing(0), form)
    state, metrics = exp.train_round(exp.initial_state, 0)
    assert np.isfinite(float(metrics["train_loss"]))


def test_cli_config_prints_the_resolved_config_with_comments(capsys):
    assert cli.main(["config", "--algorithm", "fedspeed", "--clients", "30"]) == 0
    out = capsys.readouterr().out
    assert "[fedspeed]\nprox_strength = 0.1  # lambda" in out
    assert "clients_per_round = 3  # m of N" in out  # 10% of 30
    assert "rho = 0.1  # SAM radius" in out  # fedspeed's own default
    assert "partition = 'dirichlet'" in out
    assert cli.main(["config", "--algorithm", "dfedsam_mgs", "--set", "sam.rho=0.2"]) == 0
    out = capsys.readouterr().out
    assert "gossip_steps = 4" in out and "rho = 0.2" in out
    assert cli.main(["config", "--set", "fedspeed.prox_strength=1"]) == 2
    assert "Unknown config key 'fedspeed.prox_strength'" in capsys.readouterr().err


def test_resolution_keeps_explicit_values_and_is_idempotent():
    c = config_lib.update(
        config_lib.get_config("dfedsam_mgs"),
        {"communication.gossip_steps": 2, "server.clients_per_round": 7, "data.partition": "iid"},
    )
    once = config_lib.resolve(c)
    assert (once.communication.gossip_steps, once.server.clients_per_round) == (2, 7)
    assert once.data.partition == "iid"
    assert config_lib.resolve(once).to_dict() == once.to_dict()
    defaults = config_lib.resolve(config_lib.get_config("fedavg"))
    assert defaults.server.clients_per_round == 10 and defaults.local.momentum == 0.0
    assert config_lib.resolve(config_lib.get_config("dfedavgm")).local.momentum == 0.9
    tiny = config_lib.resolve(config_lib.update(config_lib.get_config("fedavg"), num_clients=5))
    assert tiny.server.clients_per_round == 1
    speed = config_lib.update(config_lib.get_config("fedspeed"), {"fedspeed.prox_strength": 0.3})
    switched = config_lib.update(speed, algorithm="dfedsam")
    assert "fedspeed" in speed and "fedspeed" not in switched
    assert config_lib.from_dict(config_lib.resolve(switched).to_dict()).algorithm == "dfedsam"


def test_a_run_whose_config_predates_new_keys_still_resumes(tmp_path):
    experiment.run(small_config(SHORT, rounds=2, checkpoint_every=1), tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    del stored["server"]["optimizer"], stored["execution"]["unroll"]  # keys added later
    (tmp_path / "config.json").write_text(json.dumps(stored))
    args = ["run", "--workdir", str(tmp_path), "--resume"]
    assert cli.main(args) == 0
    assert json.loads((tmp_path / "config.json").read_text())["server"]["optimizer"] == "sgd"
