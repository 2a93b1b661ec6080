"""DFedAlt, DFedSalt, DFedPGP, FedPer and FedRep against NumPy references; push-sum;
per-client step counts; partitions and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab.specs import config as config_lib
from fedjax_lab import gossip as gossip_lib
from fedjax_lab import topology
from fedjax_lab.algorithms import communication
from fedjax_lab.specs import base as spec_base
from fedjax_lab.algorithms import personalized
from fedjax_lab.specs import registry
from fedjax_lab.randomness import Stream
from fedjax_lab.randomness import stream
from fedjax_lab.runner import experiment
from fedjax_lab.runner import records
from tests.helpers import numpy_reference as ref
from tests.helpers.configs import resumable_config
from tests.helpers.problems import LOSS
from tests.helpers.problems import N
from tests.helpers.problems import as64
from tests.helpers.problems import assert_close
from tests.helpers.problems import problem

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
    c = resumable_config(
        {"algorithm": "dfedalt", "data.partition": "pathological"}, rounds=3, eval_every=3
    )
    summary = experiment.run(c, tmp_path)
    stored = records.load_metrics(tmp_path)[-1]
    assert stored["test_accuracy"] == summary["test_accuracy"] > 0
    assert config_lib.resolve(c).communication.order == "gossip_then_train"


def column_stochastic_matrix(n, seed=0):
    """A static directed graph whose clients send with uneven weights: column stochastic,
    not row stochastic, strongly connected (every client sends to the next one)."""
    rng = np.random.default_rng(seed)
    p = np.eye(n) + np.roll(np.eye(n), 1, axis=0) + (rng.random((n, n)) < 0.3)
    return p / p.sum(axis=0, keepdims=True)


@pytest.mark.parametrize("push", ["update", "model", "off"])
def test_dfedpgp_rounds_match_the_numpy_reference(push):
    alg = personalized.dfedpgp(
        LOSS,
        optax.sgd(HEAD_LR),
        optax.sgd(BODY_LR),
        num_clients=N,
        head_steps=1,
        body_steps=2,
        labels=LABELS,
        push=push,
    )
    params, batches = problem()
    p = column_stochastic_matrix(N)
    assert not np.allclose(p.sum(axis=1), 1.0)  # push-sum weights move away from 1
    if push == "off":  # the released variant: each client averages what it receives
        p = p / p.sum(axis=1, keepdims=True)
    models, weights = [as64(params)] * N, [1.0] * N
    state = alg.init(params)
    for t in range(3):
        state, metrics = alg.round(state, jnp.asarray(p, jnp.float32), batches, jax.random.key(t))
        # With weights 1 and a row-stochastic W, the reference's push is plain gossip.
        models, weights = ref.push_sum_round(
            models,
            weights,
            p,
            as64(batches)["x"],
            batches["y"],
            HEAD_LR,
            BODY_LR,
            1,
            ["b"],
            "update" if push == "off" else push,
        )
        if push == "off":
            assert state.communication == () and np.allclose(weights, 1.0)
        else:
            np.testing.assert_allclose(state.communication, weights, rtol=1e-5)
        for i in range(N):
            assert_close(client(state.params, i), models[i])
    assert int(metrics["models_sent"]) == int(np.sum((p != 0) & ~np.eye(N, dtype=bool)))


def test_push_sum_finds_the_exact_average_where_row_stochastic_mixing_is_biased():
    n = 12
    p = column_stochastic_matrix(n, seed=3)
    x = np.random.default_rng(0).normal(size=(n, 5))
    pushed, weight = {"u": jnp.asarray(x, jnp.float32)}, communication.push_sum(50, "model")
    z, w, _ = weight.combine(weight.init(n), jnp.asarray(p, jnp.float32), pushed)
    np.testing.assert_allclose(z["u"], np.broadcast_to(x.mean(0), x.shape), atol=1e-4)
    assert float(jnp.sum(w)) == pytest.approx(n, rel=1e-5)  # mass is preserved
    # The same graph, each client averaging what it receives (rows normalized): consensus
    # on a weighted average, away from the true one.
    row = p / p.sum(axis=1, keepdims=True)
    plain, _, _ = communication.gossip(50).combine((), jnp.asarray(row, jnp.float32), pushed)
    assert np.ptp(np.asarray(plain["u"]), axis=0).max() < 1e-4  # it reaches consensus ...
    assert np.abs(np.asarray(plain["u"])[0] - x.mean(0)).max() > 0.05  # ... a biased one


@pytest.mark.parametrize(
    "factory, matrix, atol",
    [
        (personalized.dfedalt, lambda: ref.ring_matrix(N), 1e-6),  # gossip
        (personalized.dfedpgp, lambda: column_stochastic_matrix(N), 1e-5),  # push-sum
    ],
    ids=["gossip", "push_sum"],
)
def test_mixing_never_touches_a_clients_personal_part(factory, matrix, atol):
    # Zero learning rates: only the mixing could change anything.
    alg = factory(
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
    w = matrix()
    state, _ = alg.round(state, jnp.asarray(w, jnp.float32), batches, jax.random.key(0))
    np.testing.assert_array_equal(state.params["b"], heads)
    # Gossip: W x. Push-sum from weights 1: (P x) / (P 1), the de-biased values.
    expected = np.einsum("ij,j...->i...", w, bodies) / w.sum(axis=1).reshape(-1, 1, 1)
    np.testing.assert_allclose(state.params["w"], expected, atol=atol)


def test_the_wrong_stochasticity_is_an_error():
    params, batches = problem()
    p = column_stochastic_matrix(N)
    row = p / p.sum(axis=1, keepdims=True)
    kwargs = dict(num_clients=N, head_steps=1, body_steps=2, labels=LABELS)
    pgp = personalized.dfedpgp(LOSS, optax.sgd(0.1), optax.sgd(0.1), **kwargs)
    with pytest.raises(ValueError, match="column-stochastic P, as push-sum needs.*row 0|column"):
        pgp.round(pgp.init(params), jnp.asarray(row, jnp.float32), batches, jax.random.key(0))
    alt = personalized.dfedalt(LOSS, optax.sgd(0.1), optax.sgd(0.1), **kwargs)
    with pytest.raises(ValueError, match="row-stochastic W, as plain gossip needs"):
        alt.round(alt.init(params), jnp.asarray(p, jnp.float32), batches, jax.random.key(0))
    with pytest.raises(ValueError, match="order='train_then_gossip'"):
        personalized.dfedpgp(
            LOSS, optax.sgd(0.1), optax.sgd(0.1), order="gossip_then_train", **kwargs
        )
    # In a run, the topology's kind is checked before anything is compiled.
    c = resumable_config({"algorithm": "dfedpgp", "communication.topology": "random_in_neighbours"})
    with pytest.raises(ValueError, match="random_in_neighbours"):
        experiment.build(c)


@pytest.mark.parametrize("kind", ["fixed", "drawn"])
def test_configured_step_counts_cut_each_phase_per_client(kind):
    c = config_lib.resolve(
        config_lib.update(
            config_lib.get_config("dfedalt"),
            {
                "num_clients": N,
                "personal.layers": "b",
                "personal.head_steps": 1,
                "personal.body_steps": 2,
                "personal.head_learning_rate": HEAD_LR,
                "personal.body_learning_rate": BODY_LR,
                "local.steps": 3,
                "local.step_counts": kind,
                "local.min_steps": 1,
                "execution.strategy": "vmap",
            },
        )
    )
    alg = registry.build_algorithm(c, LOSS)
    params, batches = problem()
    w = ref.ring_matrix(N)
    key = jax.random.key(4)
    state, _ = alg.round(alg.init(params), jnp.asarray(w, jnp.float32), batches, key)
    counts = spec_base.step_counts(c)(stream(key, Stream.STEPS), jnp.arange(N))
    counts = np.asarray(counts).tolist()
    assert min(counts) >= 1 and max(counts) <= 3 and len(set(counts)) > 1
    bx, by = as64(batches)["x"], batches["y"]
    for i, k in enumerate(counts):
        # Client i runs min(K_i, 1) head steps, then min(K_i, 2) body steps.
        head, body = min(k, 1), min(k, 2)
        steps = list(range(head)) + list(range(1, 1 + body))
        expected = ref.alternating_steps(
            as64(params), bx[i][steps], by[i][steps], HEAD_LR, BODY_LR, head, ["b"]
        )
        assert_close(client(state.params, i), expected)
    with pytest.raises(ValueError, match="local.min_steps"):
        spec_base.step_counts(config_lib.update(c, {"local.min_steps": 4}))
    with pytest.raises(ValueError, match="step_counts"):
        spec_base.step_counts(config_lib.update(c, {"local.step_counts": "sometimes"}))


def test_push_sum_gives_the_same_values_in_every_mixing_form():
    n = 10
    x = {"u": jnp.asarray(np.random.default_rng(1).normal(size=(n, 4)), jnp.float32)}
    before = {"u": x["u"] * 0.5}
    piece = communication.push_sum(3, "update")
    for p in (column_stochastic_matrix(n), topology.directed_ring(n).matrix(0)):
        dense = piece.combine(piece.init(n), jnp.asarray(p), x, start=before)
        forms = [gossip_lib.to_sparse(p)]
        if gossip_lib.to_circulant(p) is not None:
            forms.append(gossip_lib.to_circulant(p))
        for form in forms:
            other = piece.combine(piece.init(n), form, x, start=before)
            np.testing.assert_allclose(other[0]["u"], dense[0]["u"], atol=1e-6)
            np.testing.assert_allclose(other[1], dense[1], atol=1e-6)
            assert int(other[2]["models_sent"]) == int(dense[2]["models_sent"])
    assert len(forms) == 2  # the directed ring is circulant
