"""Tests for fedjax_lab.gossip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import gossip as gs
from fedjax_lab import topology as topo


def _tree(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.normal(size=(n, 3, 4)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(n,)), jnp.float32),
        "nested": (jnp.asarray(rng.normal(size=(n, 2, 1, 5)), jnp.float32),),
    }


def _loop_mix(W, x):
    """Reference: y[i] = sum_j W[i, j] x[j], one client at a time, in float64."""
    W, x = np.asarray(W, np.float64), np.asarray(x, np.float64)
    y = np.zeros_like(x)
    for i in range(W.shape[0]):
        for j in range(W.shape[0]):
            y[i] += W[i, j] * x[j]
    return y


def _assert_trees_close(a, b, atol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.shape == y.shape
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol)


_MATRICES = {
    "ring50": lambda: topo.ring(50).matrix(0),
    "random_in_neighbours": lambda: topo.random_in_neighbours(50, 4, seed=2).matrix(3),
    "erdos_renyi": lambda: topo.erdos_renyi(30, 0.3, seed=0).matrix(0),
}


@pytest.mark.parametrize("name", sorted(_MATRICES))
def test_dense_sparse_and_loop_agree(name):
    W = _MATRICES[name]()
    tree = _tree(W.shape[0])
    dense = gs.mix(W, tree)
    sparse = gs.mix(gs.to_sparse(W), tree)
    _assert_trees_close(dense, sparse)
    reference = jax.tree.map(lambda x: _loop_mix(W, x), tree)
    _assert_trees_close(dense, reference, atol=1e-5)
    for leaf, mixed in zip(jax.tree.leaves(tree), jax.tree.leaves(dense)):
        assert mixed.dtype == leaf.dtype


def test_to_sparse_layout():
    W = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]], np.float32)
    s = gs.to_sparse(W)
    assert s.indices.dtype == jnp.int32 and s.weights.dtype == jnp.float32
    np.testing.assert_array_equal(s.indices, [[0, 1, 0], [0, 1, 2], [2, 2, 2]])
    np.testing.assert_allclose(s.weights, [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    padded = gs.to_sparse(W, max_degree=5)
    assert padded.indices.shape == (3, 5)
    x = jnp.arange(3.0)
    np.testing.assert_allclose(gs.mix(padded, x), W @ np.arange(3.0), rtol=1e-6)
    with pytest.raises(ValueError, match="max_degree=2 is too small: row 1 of W has 3 nonzeros"):
        gs.to_sparse(W, max_degree=2)


def test_to_sparse_degree_is_max_row_nonzeros():
    assert gs.to_sparse(topo.ring(20).matrix(0)).indices.shape == (20, 3)
    assert gs.to_sparse(topo.exponential(20).matrix(0)).indices.shape == (20, 6)


@pytest.mark.parametrize("steps", [1, 2, 5, 8])
def test_gossip_steps_equal_matrix_power(steps):
    W = topo.random_in_neighbours(20, 3, seed=0).matrix(0)
    tree = _tree(20)
    expected = jax.tree.map(
        lambda x: _loop_mix(np.linalg.matrix_power(W.astype(np.float64), steps), x), tree
    )
    _assert_trees_close(gs.gossip(W, tree, steps=steps), expected, atol=1e-5)
    _assert_trees_close(gs.gossip(gs.to_sparse(W), tree, steps=steps), expected, atol=1e-5)


def test_gossip_one_step_is_mix():
    W = topo.ring(10).matrix(0)
    tree = _tree(10)
    _assert_trees_close(gs.gossip(W, tree), gs.mix(W, tree), atol=0)


@pytest.mark.parametrize(
    "t", [topo.ring(16), topo.exponential(16), topo.erdos_renyi(16, 0.4, seed=1)]
)
def test_gossip_preserves_mean_doubly_stochastic(t):
    W = t.matrix(0)
    tree = _tree(16)
    for mixing in (W, gs.to_sparse(W)):
        out = gs.gossip(mixing, tree, steps=7)
        for x, y in zip(jax.tree.leaves(tree), jax.tree.leaves(out)):
            np.testing.assert_allclose(y.mean(axis=0), x.mean(axis=0), atol=1e-5)


def test_gossip_converges_to_mean():
    W = topo.exponential(16).matrix(0)
    x = _tree(16)["w"]
    out = gs.gossip(W, x, steps=60)
    np.testing.assert_allclose(out, jnp.broadcast_to(x.mean(axis=0), x.shape), atol=1e-5)


def test_under_jit():
    W = topo.ring(12).matrix(0)
    sparse = gs.to_sparse(W)
    tree = _tree(12)
    eager = gs.gossip(W, tree, steps=3)
    jit_dense = jax.jit(gs.gossip, static_argnames="steps")(jnp.asarray(W), tree, steps=3)
    jit_sparse = jax.jit(lambda s, x: gs.gossip(s, x, steps=3))(sparse, tree)
    jit_mix = jax.jit(gs.mix)(sparse, tree)
    _assert_trees_close(jit_dense, eager)
    _assert_trees_close(jit_sparse, eager)
    _assert_trees_close(jit_mix, gs.mix(W, tree))


def test_time_varying_with_fixed_degree_under_jit():
    t = topo.random_in_neighbours(10, 2, seed=0)
    step = jax.jit(gs.mix)
    x = jnp.arange(10.0)
    for rnd in range(3):
        W = t.matrix(rnd)
        np.testing.assert_allclose(step(gs.to_sparse(W, max_degree=3), x), W @ x, rtol=1e-5)


def test_keeps_low_precision_dtype():
    W = topo.ring(8).matrix(0)
    x = jnp.ones((8, 3), jnp.bfloat16)
    for mixing in (W, gs.to_sparse(W)):
        out = gs.gossip(mixing, x, steps=2)
        assert out.dtype == jnp.bfloat16
        np.testing.assert_allclose(out.astype(np.float32), 1.0, atol=1e-2)


def test_errors():
    W = topo.ring(5).matrix(0)
    with pytest.raises(ValueError, match="steps >= 1, got 0"):
        gs.gossip(W, jnp.ones(5), steps=0)
    with pytest.raises(ValueError, match=r"leading client axis of size N=5.*shape \(4, 2\)"):
        gs.mix(W, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match=r"square 2-D array \[N, N\], got shape \(5, 4\)"):
        gs.mix(W[:, :4], jnp.ones(5))
    with pytest.raises(TypeError, match="floating point.*int32"):
        gs.mix(W, jnp.ones(5, jnp.int32))


def test_is_sparse_worthwhile():
    assert gs.is_sparse_worthwhile(topo.ring(100).matrix(0))
    assert not gs.is_sparse_worthwhile(topo.ring(10).matrix(0))
    assert not gs.is_sparse_worthwhile(topo.fully_connected(100).matrix(0))


@pytest.mark.parametrize(
    "topology",
    [topo.ring(50), topo.exponential(20), topo.fully_connected(6), topo.one_peer_exponential(12)],
    ids=lambda t: t.name,
)
def test_circulant_form_equals_the_per_client_loop(topology):
    W = topology.matrix(1)
    circulant = gs.to_circulant(W)
    assert circulant is not None and circulant.num_clients == W.shape[0]
    assert len(circulant.offsets) == np.count_nonzero(W[0])
    tree = _tree(W.shape[0], seed=3)
    reference = jax.tree.map(lambda x: _loop_mix(W, x), tree)
    _assert_trees_close(gs.mix(circulant, tree), reference, atol=1e-5)
    _assert_trees_close(jax.jit(gs.mix)(circulant, tree), reference, atol=1e-5)
    three = jax.jit(lambda m, t: gs.gossip(m, t, steps=3))(circulant, tree)
    _assert_trees_close(three, gs.gossip(W, tree, steps=3), atol=1e-5)


def test_to_circulant_rejects_matrices_that_are_not_circulant():
    assert gs.to_circulant(topo.torus(16).matrix(0)) is None  # circulant blocks, not circulant
    assert gs.to_circulant(topo.erdos_renyi(30, 0.3, seed=0).matrix(0)) is None
    W = topo.ring(8).matrix(0).copy()
    W[3, 3] += 1e-3  # a single entry off the diagonal pattern
    assert gs.to_circulant(W) is None
    bad = gs.CirculantMixing(jnp.ones(2), offsets=(0, 1, 2), num_clients=8)
    with pytest.raises(ValueError, match="one weight per offset"):
        gs.mix(bad, jnp.ones((8, 2)))
