"""SCAFFOLD, FedDyn and FedProx against independent NumPy per-client references, over
several rounds with changing cohorts (the references keep every client's state)."""

import jax
import numpy as np
import optax
import pytest

from fedjax_lab import algorithms
from fedjax_lab import objectives
from tests.helpers import reference_server_variants as ref

N, M, K, B, D, C = 7, 3, 4, 8, 5, 3
LR, ROUNDS = 0.2, 5


def apply_fn(params, x):
    return x @ params["w"] + params["b"]


LOSS = objectives.cross_entropy_loss(apply_fn)


def run_both(alg, reference_round, reference_state, step_counts=None):
    """``ROUNDS`` rounds of ``alg`` and of the reference, fresh batches and cohort each round."""
    rng = np.random.default_rng(0)
    params = {
        "w": rng.normal(size=(D, C)).astype(np.float32) * 0.3,
        "b": rng.normal(size=(C,)).astype(np.float32) * 0.1,
    }
    state, cohorts = alg.init(params), []
    reference = ({k: v.astype(np.float64) for k, v in params.items()}, *reference_state(params))
    round_fn = jax.jit(alg.round)
    for r in range(ROUNDS):
        key = jax.random.key(r)
        ids = [int(i) for i in alg.cohort(key)]
        cohorts.append(tuple(ids))
        bx = rng.normal(size=(M, K, B, D)).astype(np.float32)
        by = rng.integers(0, C, size=(M, K, B)).astype(np.int32)
        state, metrics = round_fn(state, None, {"x": bx, "y": by}, key)
        reference = reference_round(reference, ids, bx.astype(np.float64), by)
    assert len(set(cohorts)) > 1, "the test needs cohorts that change between rounds"
    return state, reference


def assert_close(actual, expected):
    for k in expected:
        np.testing.assert_allclose(np.asarray(actual[k]), expected[k], atol=2e-5, rtol=1e-4)


def zeros(params, n=None):
    z = {k: np.zeros(v.shape) for k, v in params.items()}
    return z if n is None else [dict(z) for _ in range(n)]


def test_scaffold_matches_numpy_over_rounds_with_changing_cohorts():
    alg = algorithms.scaffold(LOSS, learning_rate=LR, num_clients=N, clients_per_round=M)
    state, (x, c, c_clients) = run_both(
        alg,
        lambda s, ids, bx, by: ref.scaffold_round(*s, ids, bx, by, LR),
        lambda p: (zeros(p), zeros(p, N)),
    )
    assert_close(state.params, x)
    for i in range(N):  # every client's control variate, sampled or not
        assert_close(jax.tree.map(lambda v: v[i], state.clients), c_clients[i])
    assert_close(state.server[0].mean, c)  # the server's c


def test_scaffold_counts_its_control_variates_in_the_traffic():
    """x and c down, Delta y_i and Delta c_i up: twice FedAvg's models per client."""
    params = {"w": np.zeros((D, C), np.float32), "b": np.zeros((C,), np.float32)}
    batches = {"x": np.zeros((M, K, B, D), np.float32), "y": np.zeros((M, K, B), np.int32)}
    cohort = dict(num_clients=N, clients_per_round=M)
    built = {
        "scaffold": algorithms.scaffold(LOSS, learning_rate=LR, **cohort),
        "fedavg": algorithms.fedavg(LOSS, optax.sgd(LR), **cohort),
    }
    sent = {}
    for name, alg in built.items():
        _, metrics = alg.round(alg.init(params), None, batches, jax.random.key(0))
        sent[name] = int(metrics["models_sent"])
        assert alg.message_bytes(params) == {"models_sent": (D * C + C) * 4}
    assert sent == {"scaffold": 4 * M, "fedavg": 2 * M}


def test_feddyn_matches_numpy_over_rounds_with_changing_cohorts():
    alpha = 0.1
    alg = algorithms.feddyn(
        LOSS, learning_rate=LR, alpha=alpha, num_clients=N, clients_per_round=M
    )
    state, (x, h, grads_prev) = run_both(
        alg,
        lambda s, ids, bx, by: ref.feddyn_round(*s, ids, bx, by, LR, alpha),
        lambda p: (zeros(p), zeros(p, N)),
    )
    assert_close(state.params, x)
    for i in range(N):
        assert_close(jax.tree.map(lambda v: v[i], state.clients), grads_prev[i])


@pytest.mark.parametrize("mu", [0.0, 0.5])
def test_fedprox_matches_numpy_over_rounds_with_changing_cohorts(mu):
    alg = algorithms.fedprox(LOSS, learning_rate=LR, mu=mu, num_clients=N, clients_per_round=M)
    state, (x,) = run_both(
        alg,
        lambda s, ids, bx, by: (ref.fedprox_round(s[0], ids, bx, by, LR, mu),),
        lambda p: (),
    )
    assert_close(state.params, x)


def test_the_proximal_pull_changes_fedprox():
    """mu > 0 moves the result away from FedAvg's (mu = 0 is FedAvg)."""
    plain = algorithms.fedprox(LOSS, learning_rate=LR, mu=0.0, num_clients=N, clients_per_round=M)
    pulled = algorithms.fedprox(LOSS, learning_rate=LR, mu=2.0, num_clients=N, clients_per_round=M)
    a, _ = run_both(plain, lambda s, *a: s, lambda p: ())
    b, _ = run_both(pulled, lambda s, *a: s, lambda p: ())
    assert float(np.max(np.abs(np.asarray(a.params["w"]) - np.asarray(b.params["w"])))) > 1e-3


def test_bad_hyperparameters_are_clear_errors():
    with pytest.raises(ValueError, match="FedDyn's alpha > 0, got 0"):
        algorithms.feddyn(LOSS, learning_rate=LR, alpha=0, num_clients=N, clients_per_round=M)
    with pytest.raises(ValueError, match="proximal strength >= 0, got -1"):
        algorithms.fedprox(LOSS, learning_rate=LR, mu=-1, num_clients=N, clients_per_round=M)
