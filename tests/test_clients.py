"""map_clients strategies and per-client keys."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import clients


def per_client(params, key):
    noise = jax.random.normal(key, params["a"].shape)
    return {"a": jnp.tanh(params["a"] @ params["m"]) + noise, "s": jnp.sum(params["m"])}


@pytest.mark.parametrize(
    "strategy,chunk", [("chunked", 1), ("chunked", 3), ("chunked", 7), ("sequential", None)]
)
def test_strategies_give_the_same_results(strategy, chunk):
    rng = np.random.default_rng(0)
    params = {
        "a": rng.normal(size=(7, 5)).astype(np.float32),
        "m": rng.normal(size=(7, 5, 5)).astype(np.float32),
    }
    keys = clients.client_keys(jax.random.key(1), jnp.arange(7))
    expected = clients.map_clients(per_client, params, keys)
    actual = jax.jit(
        lambda p, k: clients.map_clients(per_client, p, k, strategy=strategy, chunk_size=chunk)
    )(params, keys)
    chex.assert_trees_all_close(actual, expected, atol=1e-6)
    # Against a plain Python loop over clients.
    for i in range(7):
        one = per_client({k: v[i] for k, v in params.items()}, keys[i])
        np.testing.assert_allclose(actual["a"][i], one["a"], atol=1e-6)


def test_client_keys_depend_only_on_the_client_id():
    key = jax.random.key(3)
    a = jax.random.key_data(clients.client_keys(key, jnp.array([4, 1, 9])))
    b = jax.random.key_data(clients.client_keys(key, jnp.array([9, 4])))
    np.testing.assert_array_equal(a[0], b[1])
    np.testing.assert_array_equal(a[2], b[0])
    assert not np.array_equal(a[0], a[1])


def test_helpers_and_errors():
    tree = {"x": jnp.ones((3, 2)), "y": jnp.zeros((3,))}
    assert clients.num_clients(tree) == 3
    assert clients.broadcast_to_clients({"x": jnp.ones(2)}, 4)["x"].shape == (4, 2)
    np.testing.assert_allclose(
        clients.client_mean({"x": jnp.arange(6.0).reshape(3, 2)})["x"], [2.0, 3.0]
    )
    with pytest.raises(ValueError, match="leading client axis"):
        clients.num_clients({"x": jnp.ones((3, 2)), "y": jnp.ones((4,))})
    with pytest.raises(ValueError, match="chunk_size >= 1, got 0"):
        clients.map_clients(lambda a: a, tree, strategy="chunked", chunk_size=0)
    with pytest.raises(ValueError, match="only used by the 'chunked'"):
        clients.map_clients(lambda a: a, tree, strategy="vmap", chunk_size=2)


SKIPPED = {  # active = the first 3 of 7 clients
    ("chunked", 2): [2, 4, 6, 8, 0, 0, 0],  # chunks {0,1} {2,3} run, {4,5} {6} are skipped
    ("chunked", 3): [2, 4, 6, 0, 0, 0, 0],  # {0,1,2} runs, {3,4,5} {6} are skipped
    ("chunked", 4): [2, 4, 6, 8, 0, 0, 0],  # {0,1,2,3} runs, the partial {4,5,6} is skipped
    ("chunked", 10): [2, 4, 6, 8, 10, 12, 14],  # one partial chunk, which runs
    ("sequential", None): [2, 4, 6, 0, 0, 0, 0],
}


@pytest.mark.parametrize("strategy,chunk_size", list(SKIPPED))
def test_loop_strategies_skip_the_clients_that_are_not_active(strategy, chunk_size):
    x = jnp.arange(1.0, 8.0)
    active = jnp.arange(7) < 3
    double = lambda v: 2 * v
    out = clients.map_clients(double, x, strategy=strategy, chunk_size=chunk_size, active=active)
    np.testing.assert_array_equal(out, SKIPPED[strategy, chunk_size])
    everyone = clients.map_clients(double, x, strategy="vmap", active=active)
    np.testing.assert_array_equal(everyone, 2 * x)  # vmap computes every client
