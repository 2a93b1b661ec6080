"""DFedAlt, DFedSalt, FedPer and FedRep against NumPy references; partitions and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import config as config_lib
from fedjax_lab import experiment
from fedjax_lab import records
from fedjax_lab.algorithms import personalized
from tests import numpy_reference as ref
from tests.test_algorithms import LOSS
from tests.test_algorithms import N
from tests.test_algorithms import as64
from tests.test_algorithms import assert_close
from tests.test_algorithms import problem
from tests.test_runner import small_config

LABELS = {"w": "shared", "b": "personal"}  # the test model's bias is its "head"
HEAD_LR, BODY_LR = 0.2, 0.4


def client(stacked, i):
    return {k: np.asarray(v[i]) for k, v in stacked.items()}


@pytest.mark.parametrize("rho", [None, 0.3])  # dfedalt, dfedsalt
def test_dfedalt_and_dfedsalt_rounds_match_the_numpy_reference(rho):
    kwargs = dict(num_clients=N, head_steps=1, body_steps=2, labels=LABELS)
    if rho is None:
        alg = personalized.dfedalt(LOSS, optax.sgd(HEAD_LR), optax.sgd(BODY_LR), **kwargs)
    else:
        alg = personalized.dfedsalt(
            LOSS, optax.sgd(HEAD_LR), body_learning_rate=BODY_LR, rho=rho, **kwargs
        )
    params, batches = problem()
    w = ref.ring_matrix(N)
    rng = np.random.default_rng(1)
    models = [{k: v + 0.1 * rng.normal(size=v.shape) for k, v in as64(params).items()}]
    models += [{k: v + 0.1 * rng.normal(size=v.shape) for k, v in models[0].items()}]
    models += [as64(params)] * (N - 2)  # clients start apart, so gossip matters
    state = alg.init(params)._replace(
        params={k: jnp.asarray(np.stack([m[k] for m in models]), jnp.float32) for k in params}
    )
    for t in range(2):
        state, _ = alg.round(state, jnp.asarray(w, jnp.float32), batches, jax.random.key(t))
        models = ref.dfedalt_round(
            models, w, as64(batches)["x"], batches["y"], HEAD_LR, BODY_LR, 1, ["b"], rho=rho
        )
        for i in range(N):
            assert_close(client(state.params, i), models[i])


def test_gossip_never_touches_a_clients_personal_part():
    # Body steps with a zero learning rate: only gossip could change anything.
    alg = personalized.dfedalt(
        LOSS,
        optax.sgd(0.0),
        optax.sgd(0.0),
        num_clients=N,
        head_steps=1,
        body_steps=2,
        labels=LABELS,
    )
    params, batches = problem()
    heads = np.arange(N * 3, dtype=np.float32).reshape(N, 3)
    bodies = np.random.default_rng(0).normal(size=(N,) + params["w"].shape).astype(np.float32)
    state = alg.init(params)._replace(params={"w": jnp.asarray(bodies), "b": jnp.asarray(heads)})
    w = ref.ring_matrix(N)
    state, _ = alg.round(state, jnp.asarray(w, jnp.float32), batches, jax.random.key(0))
    np.testing.assert_array_equal(state.params["b"], heads)
    np.testing.assert_allclose(state.params["w"], np.einsum("ij,j...->i...", w, bodies), atol=1e-6)


@pytest.mark.parametrize("name", ["fedper", "fedrep"])
def test_fedper_and_fedrep_keep_every_clients_head_across_rounds(name):
    if name == "fedper":
        alg = personalized.fedper(
            LOSS, optax.sgd(BODY_LR), num_clients=N, clients_per_round=2, labels=LABELS
        )
        train = lambda y, xs, ys: ref.local_steps(y, xs, ys, BODY_LR)
    else:
        alg = personalized.fedrep(
            LOSS,
            optax.sgd(HEAD_LR),
            optax.sgd(BODY_LR),
            num_clients=N,
            clients_per_round=2,
            head_steps=1,
            body_steps=2,
            labels=LABELS,
        )
        train = lambda y, xs, ys: ref.alternating_steps(y, xs, ys, HEAD_LR, BODY_LR, 1, ["b"])
    params, batches = problem(num_batches=2)
    state = alg.init(params)
    x = as64(params)
    heads = [{"b": x["b"]} for _ in range(N)]
    for t in range(4):
        key = jax.random.key(t)
        ids = [int(i) for i in alg.cohort(key)]
        state, _ = alg.round(state, None, batches, key)
        x, heads = ref.personalized_server_round(
            x, heads, ids, as64(batches)["x"], batches["y"], train, ["b"]
        )
        assert_close(state.params, {"w": x["w"]})
        mine = alg.client_params(state)  # every client's own (u, v_i), sampled or not
        for i in range(N):
            assert_close(client(mine, i), {"w": x["w"], "b": heads[i]["b"]})


def test_a_partition_without_a_shared_or_personal_part_is_an_error():
    params, _ = problem()
    for labels, missing in (
        ({"w": "personal", "b": "personal"}, "no shared"),
        ({"w": "shared", "b": "shared"}, "no personal"),
    ):
        alg = personalized.dfedalt(
            LOSS,
            optax.sgd(0.1),
            optax.sgd(0.1),
            num_clients=N,
            head_steps=1,
            body_steps=1,
            labels=labels,
        )
        with pytest.raises(ValueError, match=f"leaves {missing} parameters"):
            alg.init(params)
    c = config_lib.update(config_lib.get_config("fedper"), {"personal.layers": "body"})
    with pytest.raises(ValueError, match="body"):
        experiment.build(c)


def test_personalized_runs_report_each_clients_own_accuracy(tmp_path):
    c = small_config(
        {"algorithm": "dfedalt", "data.partition": "pathological"}, rounds=3, eval_every=3
    )
    summary = experiment.run(c, tmp_path)
    stored = records.load_metrics(tmp_path)[-1]
    assert stored["test_accuracy"] == summary["test_accuracy"] > 0
    assert config_lib.resolve(c).communication.order == "gossip_then_train"
