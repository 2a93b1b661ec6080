"""Each algorithm's round against the independent NumPy per-client loop."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import algorithms
from fedjax_lab import clients
from fedjax_lab import gossip
from tests.helpers import numpy_reference as ref
from tests.helpers.problems import C
from tests.helpers.problems import D
from tests.helpers.problems import LOSS
from tests.helpers.problems import LR
from tests.helpers.problems import N
from tests.helpers.problems import as64
from tests.helpers.problems import assert_close
from tests.helpers.problems import problem


def unstack(stacked):
    return [{k: np.asarray(v[i]) for k, v in stacked.items()} for i in range(N)]


SERVER_CASES = {
    "fedavg": (
        lambda: algorithms.fedavg(
            LOSS, optax.sgd(LR), num_clients=N, clients_per_round=3, server_learning_rate=0.7
        ),
        dict(),
        0.7,
    ),
    "fedsam": (
        lambda: algorithms.fedsam(
            LOSS,
            learning_rate=LR,
            rho=0.2,
            num_clients=N,
            clients_per_round=3,
            server_learning_rate=0.7,
        ),
        dict(rho=0.2),
        0.7,
    ),
}


@pytest.mark.parametrize("name", SERVER_CASES)
def test_server_round_matches_numpy(name):
    build, local_kwargs, server_lr = SERVER_CASES[name]
    alg = build()
    params, batches = problem(num_batches=3)
    key = jax.random.key(7)
    ids = np.asarray(alg.cohort(key))
    state, metrics = jax.jit(alg.round)(alg.init(params), None, batches, key)
    expected = ref.fedavg_round(
        as64(params), ids, as64(batches)["x"], batches["y"], LR, server_lr=server_lr, **local_kwargs
    )
    assert_close(state.params, expected)
    assert int(state.round) == 1
    assert int(metrics["models_sent"]) == 2 * 3


def test_cohort_is_a_uniform_sample_without_replacement():
    alg = algorithms.fedavg(LOSS, optax.sgd(LR), num_clients=10, clients_per_round=4)
    counts = np.zeros(10)
    for r in range(500):
        ids = np.asarray(alg.cohort(jax.random.key(r)))
        assert len(set(ids.tolist())) == 4 and ids.min() >= 0 and ids.max() < 10
        counts[ids] += 1
    # Each client is picked with probability 0.4: 200 expected, sd about 11.
    assert np.all(np.abs(counts - 200) < 50), counts


DECENTRALIZED_CASES = {
    "dfedavg": (lambda **kw: algorithms.dfedavg(LOSS, learning_rate=LR, **kw), dict()),
    "dfedavgm": (
        lambda **kw: algorithms.dfedavgm(LOSS, learning_rate=LR, momentum=0.9, **kw),
        dict(momentum=0.9),
    ),
    "dfedsam": (
        lambda **kw: algorithms.dfedsam(LOSS, learning_rate=LR, rho=0.2, **kw),
        dict(rho=0.2),
    ),
}


@pytest.mark.parametrize("name", DECENTRALIZED_CASES)
@pytest.mark.parametrize(
    "gossip_steps,order",
    [(1, "train_then_gossip"), (3, "train_then_gossip"), (1, "gossip_then_train")],
)
def test_decentralized_round_matches_numpy(name, gossip_steps, order):
    build, local_kwargs = DECENTRALIZED_CASES[name]
    alg = build(num_clients=N, gossip_steps=gossip_steps, order=order)
    params, batches = problem()
    # Start from distinct client models so gossip order matters.
    rng = np.random.default_rng(1)
    stacked = {
        k: np.stack([v + 0.1 * rng.normal(size=v.shape).astype(np.float32) for _ in range(N)])
        for k, v in params.items()
    }
    state = alg.init(params)._replace(params=stacked)
    w = ref.ring_matrix(N)
    new_state, metrics = jax.jit(alg.round)(
        state, jnp.asarray(w, jnp.float32), batches, jax.random.key(0)
    )
    expected = ref.decentralized_round(
        [as64(m) for m in unstack(stacked)],
        w,
        as64(batches)["x"],
        batches["y"],
        LR,
        gossip_steps=gossip_steps,
        order=order,
        **local_kwargs,
    )
    for i in range(N):
        assert_close(unstack(new_state.params)[i], expected[i])
    assert int(metrics["models_sent"]) == 2 * N * gossip_steps


def test_lr_decay_scales_local_updates_by_round():
    alg = algorithms.dfedavg(LOSS, learning_rate=LR, num_clients=N, lr_decay=0.5)
    params, batches = problem()
    state = alg.init(params)._replace(round=jnp.int32(2))
    new_state, _ = alg.round(state, jnp.eye(N), batches, jax.random.key(0))
    expected = ref.decentralized_round(
        [as64(params)] * N, np.eye(N), as64(batches)["x"], batches["y"], LR * 0.25
    )
    for i in range(N):
        assert_close(unstack(new_state.params)[i], expected[i])


def test_dfedsam_applies_the_perturbation():
    params, batches = problem()
    w = jnp.asarray(ref.ring_matrix(N), jnp.float32)
    run = lambda alg: alg.round(alg.init(params), w, batches, jax.random.key(0))[0].params
    plain = run(algorithms.dfedavg(LOSS, learning_rate=LR, num_clients=N))
    sam0 = run(algorithms.dfedsam(LOSS, learning_rate=LR, rho=0.0, num_clients=N))
    sam = run(algorithms.dfedsam(LOSS, learning_rate=LR, rho=0.5, num_clients=N))
    chex.assert_trees_all_close(sam0, plain, atol=1e-6)
    assert float(jnp.max(jnp.abs(sam["w"] - plain["w"]))) > 1e-3


@pytest.mark.parametrize(
    "strategy,chunk_size", [("chunked", 2), ("chunked", 5), ("sequential", None)]
)
def test_strategies_agree(strategy, chunk_size):
    params, batches = problem()
    w = jnp.asarray(ref.ring_matrix(N), jnp.float32)
    build = lambda **kw: algorithms.dfedsam(LOSS, learning_rate=LR, rho=0.1, num_clients=N, **kw)
    alg = build()
    how = clients.Execution(strategy, chunk_size)
    expected, _ = jax.jit(alg.round)(alg.init(params), w, batches, jax.random.key(3))
    actual, _ = jax.jit(functools.partial(alg.round, execution=how))(
        alg.init(params), w, batches, jax.random.key(3)
    )
    chex.assert_trees_all_close(actual.params, expected.params, atol=1e-6, rtol=1e-6)


def test_sparse_circulant_and_dense_mixing_give_the_same_round():
    params, batches = problem()
    w = ref.ring_matrix(N).astype(np.float32)
    alg = algorithms.dfedavg(LOSS, learning_rate=LR, num_clients=N, gossip_steps=2)
    dense, m_dense = alg.round(alg.init(params), jnp.asarray(w), batches, jax.random.key(0))
    for mixing in (gossip.to_sparse(w), gossip.to_circulant(w)):
        other, m_other = alg.round(alg.init(params), mixing, batches, jax.random.key(0))
        chex.assert_trees_all_close(other.params, dense.params, atol=1e-6)
        assert int(m_other["models_sent"]) == int(m_dense["models_sent"]) == 2 * 2 * N
    wrong_size = gossip.to_circulant(ref.ring_matrix(N + 1))
    with pytest.raises(ValueError, match=f"CirculantMixing over {N} clients"):
        alg.round(alg.init(params), wrong_size, batches, jax.random.key(0))


def test_bad_inputs_raise_clear_errors():
    params, batches = problem()
    dec = algorithms.dfedavg(LOSS, learning_rate=LR, num_clients=N)
    with pytest.raises(ValueError, match=r"shape \(5, 5\)"):
        dec.round(dec.init(params), jnp.eye(4), batches, jax.random.key(0))
    with pytest.raises(ValueError, match="mixing matrix"):
        dec.round(dec.init(params), None, batches, jax.random.key(0))
    srv = algorithms.fedavg(LOSS, optax.sgd(LR), num_clients=N, clients_per_round=2)
    with pytest.raises(ValueError, match="cohort=2"):
        srv.round(srv.init(params), None, batches, jax.random.key(0))
    with pytest.raises(ValueError, match="clients_per_round <= num_clients=5, got 6"):
        algorithms.fedavg(LOSS, optax.sgd(LR), num_clients=N, clients_per_round=6)
    with pytest.raises(ValueError, match="gossip_steps"):
        algorithms.dfedavg(LOSS, learning_rate=LR, num_clients=N, gossip_steps=0)
    with pytest.raises(ValueError, match="'sideways'"):
        dec.round(dec.init(params), None, batches, jax.random.key(0), clients.Execution("sideways"))
    with pytest.raises(ValueError, match="momentum"):
        algorithms.dfedavgm(LOSS, learning_rate=LR, momentum=1.5, num_clients=N)


def test_fedspeed_keeps_per_client_corrections_and_matches_numpy():
    alg = algorithms.fedspeed(
        LOSS, learning_rate=LR, rho=0.2, prox_strength=0.3, num_clients=N, clients_per_round=3
    )
    params, _ = problem()
    state = alg.init(params)
    x, h = as64(params), [{k: np.zeros_like(v) for k, v in as64(params).items()} for _ in range(N)]
    step = jax.jit(alg.round)
    seen = set()
    for r in range(3):  # cohorts differ, so untouched rows must persist
        _, batches = problem(num_batches=3, seed=10 + r)
        key = jax.random.key(r)
        ids = np.asarray(alg.cohort(key))
        seen |= set(ids.tolist())
        state, _ = step(state, None, batches, key)
        x = ref.fedspeed_round(x, h, ids, as64(batches)["x"], batches["y"], LR, rho=0.2, lam=0.3)
    assert len(seen) > 3
    assert_close(state.params, x, atol=5e-5)
    for i in range(N):
        assert_close({k: v[i] for k, v in state.clients.items()}, h[i], atol=5e-5)
    untouched = [i for i in range(N) if i not in seen]
    for i in untouched:
        assert not np.any(np.asarray(state.clients["w"][i]))


def test_server_optimizer_is_an_optax_transformation_fedadam():
    alg = algorithms.fedavg(
        LOSS,
        optax.sgd(LR),
        num_clients=N,
        clients_per_round=3,
        server_optimizer=optax.adam(0.05),
    )
    params, _ = problem()
    state = alg.init(params)
    x = as64(params)
    m = {k: np.zeros_like(v) for k, v in x.items()}
    v = {k: np.zeros_like(val) for k, val in x.items()}
    for r in range(2):
        _, batches = problem(num_batches=3, seed=20 + r)
        key = jax.random.key(r)
        ids = np.asarray(alg.cohort(key))
        state, _ = alg.round(state, None, batches, key)
        x, m, v = ref.adam_server_round(
            x, m, v, r + 1, ids, as64(batches)["x"], batches["y"], LR, server_lr=0.05
        )
    assert_close(state.params, x, atol=2e-5)


def test_update_transform_clips_each_client_update_before_gossip():
    clip = 0.05
    alg = algorithms.dfedavg(
        LOSS, learning_rate=LR, num_clients=N, transform=optax.clip_by_global_norm(clip)
    )
    params, batches = problem()
    w = ref.ring_matrix(N)
    state, _ = alg.round(alg.init(params), jnp.asarray(w, jnp.float32), batches, jax.random.key(0))
    expected = ref.clipped_gossip_round(
        [as64(params)] * N, w, as64(batches)["x"], batches["y"], LR, clip
    )
    for i in range(N):
        assert_close(unstack(state.params)[i], expected[i])


def noise_transform(std):
    """Adds N(0, std^2) noise from the per-client key (a stand-in for DP noise)."""

    def update(updates, state, params=None, *, key, **extra):
        del params, extra
        leaves, tree = jax.tree.flatten(updates)
        keys = jax.random.split(key, len(leaves))
        noisy = [u + std * jax.random.normal(k, u.shape) for u, k in zip(leaves, keys)]
        return jax.tree.unflatten(tree, noisy), state

    return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)


@pytest.mark.parametrize(
    "strategy,chunk_size", [("vmap", None), ("chunked", 2), ("sequential", None)]
)
def test_update_transform_gets_independent_per_client_keys(strategy, chunk_size):
    params, batches = problem()
    build = lambda transform: algorithms.dfedavg(
        LOSS,
        learning_rate=LR,
        num_clients=N,
        transform=transform,
    )
    eye = jnp.eye(N)
    how = clients.Execution(strategy, chunk_size)
    plain, noisy = build(None), build(noise_transform(1.0))
    a, _ = plain.round(plain.init(params), eye, batches, jax.random.key(0), how)
    b, _ = noisy.round(noisy.init(params), eye, batches, jax.random.key(0), how)
    noise = np.asarray(b.params["w"] - a.params["w"]).reshape(N, -1)
    assert 0.8 < noise.std() < 1.2
    # Different clients draw different noise, and a client's noise does not depend on the
    # strategy (the vmap round draws the same).
    assert np.abs(np.corrcoef(noise)[np.triu_indices(N, 1)]).max() < 0.9
    vmapped = algorithms.dfedavg(
        LOSS, learning_rate=LR, num_clients=N, transform=noise_transform(1.0)
    )
    c, _ = vmapped.round(vmapped.init(params), eye, batches, jax.random.key(0))
    chex.assert_trees_all_close(b.params, c.params, atol=1e-5)


def test_partition_gossips_the_shared_part_only():
    from fedjax_lab import partition

    labels = partition.personal_layers(["b"])
    alg = algorithms.dfedavg(LOSS, learning_rate=LR, num_clients=N, labels=labels)
    params, batches = problem()
    w = ref.ring_matrix(N)
    state, metrics = alg.round(
        alg.init(params), jnp.asarray(w, jnp.float32), batches, jax.random.key(0)
    )
    trained = [
        ref.local_steps(as64(params), as64(batches)["x"][i], batches["y"][i], LR) for i in range(N)
    ]
    mixed = ref.gossip(trained, w)
    for i in range(N):
        got = unstack(state.params)[i]
        np.testing.assert_allclose(got["w"], mixed[i]["w"], atol=2e-5)
        np.testing.assert_allclose(got["b"], trained[i]["b"], atol=2e-5)  # never left client i
    assert alg.message_bytes(params) == {"models_sent": 4 * D * C}
