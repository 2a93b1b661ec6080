"""The layer from configs to algorithms: each algorithm owns its sections, reads what it
uses and refuses what it does not; the builders need no runner."""

import json

import jax
import numpy as np
import pytest

from fedjax_lab import objectives
from fedjax_lab import specs
from fedjax_lab.runner import experiment
from fedjax_lab.specs import config as config_lib

LOSS = objectives.cross_entropy_loss(lambda p, x: x @ p["w"] + p["b"])


def test_switching_algorithms_resets_the_sections_to_the_new_ones_defaults(tmp_path):
    """``--algorithm dp_fedavg --set algorithm=fed_ltp`` trains fed_ltp with its own DP
    defaults and no leftover keys, and the run resumes from its stored config."""
    c = config_lib.apply_overrides(config_lib.get_config("dp_fedavg"), ["algorithm=fed_ltp"])
    resolved = config_lib.resolve(c)
    assert resolved.dp.clip_norm == 1.0 and resolved.dp.delta == 1e-5
    own = {f.key for f in specs.spec("fed_ltp").fields}
    flat = config_lib.flatten(resolved.to_dict())
    assert {k for k in flat if k.split(".")[0] in ("dp", "ltp")} == own  # no dp.accountant
    tiny = config_lib.update(
        c,
        {
            "num_clients": 4,
            "rounds": 2,
            "local.steps": 2,
            "local.batch_size": 4,
            "data.test_examples_per_client": 10,
            "progress": False,
            "checkpoint_every": 1,
        },
    )
    first = experiment.run(tiny, tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    again = experiment.run(config_lib.from_dict(stored), tmp_path, resume=True)
    assert again["params_sha256"] == first["params_sha256"]


def test_switching_back_and_forth_keeps_nothing_of_the_other_algorithm():
    c = config_lib.update(config_lib.get_config("dp_fedavg"), {"dp.clip_norm": 0.7})
    assert config_lib.update(c, algorithm="dp_fedavg").dp.clip_norm == 0.7  # no switch
    assert config_lib.update(c, algorithm="dp_fedsam").dp.clip_norm == 0.2  # the defaults
    assert "dp" not in config_lib.update(c, algorithm="fedavg")


def test_an_unresolved_default_config_builds():
    alg = specs.build_algorithm(config_lib.get_config("fedavg"), LOSS)
    assert alg.name == "fedavg" and alg.cohort_size == 10


@pytest.mark.parametrize("name", ["fedavg", "dfedavg", "fedsam", "dfedsam", "fed_ltp"])
def test_momentum_outside_0_1_is_an_error_for_every_algorithm_that_reads_it(name):
    c = config_lib.update(config_lib.get_config(name), {"local.momentum": 1.5})
    with pytest.raises(ValueError, match=r"local.momentum in \[0, 1\), got 1.5"):
        specs.build_algorithm(c, LOSS)


def test_a_key_an_algorithm_does_not_read_is_an_error_that_names_what_it_reads():
    c = config_lib.update(config_lib.get_config("fedspeed"), {"local.momentum": 0.5})
    with pytest.raises(ValueError, match=r"local.momentum=0.5 does not apply to fedspeed, which "
                       r"reads .*local.weight_decay.*sam.rho"):
        specs.build_algorithm(c, LOSS)
    for name, key, value in (
        ("fedavg", "sam.rho", 0.2),
        ("dfedavg", "server.clients_per_round", 3),
        ("fedavg", "communication.gossip_steps", 2),
        ("dfedalt", "local.learning_rate", 0.3),
        ("fed_bbpt", "zo.seeds", 16),
        ("feddyn", "server.learning_rate", 0.5),  # its server rule is the paper's, fixed
        ("feddyn", "server.optimizer", "adam"),
    ):
        c = config_lib.update(config_lib.get_config(name), {key: value})
        with pytest.raises(ValueError, match=f"{key}={value!r} does not apply to {name}"):
            specs.build_algorithm(c, LOSS)


def test_fedspeed_applies_its_weight_decay():
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(6, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}
    batches = {
        "x": rng.normal(size=(2, 10, 4, 6)).astype(np.float32),
        "y": rng.integers(0, 3, size=(2, 10, 4)).astype(np.int32),
    }
    results = []
    for decay in (0.0, 1e-2):
        c = config_lib.update(
            config_lib.get_config("fedspeed"),
            {"num_clients": 4, "server.clients_per_round": 2, "local.weight_decay": decay},
        )
        alg = specs.build_algorithm(c, LOSS)
        state, _ = alg.round(alg.init(params), None, batches, jax.random.key(0))
        results.append(np.asarray(state.params["w"]))
    assert np.max(np.abs(results[0] - results[1])) > 1e-4


def test_keys_read_lists_what_changes_an_algorithm():
    read = specs.registry.keys_read(config_lib.get_config("dfedalt"))
    assert "personal.head_learning_rate" in read and "local.learning_rate" not in read
    assert "communication.gossip_steps" in read and "server.clients_per_round" not in read
