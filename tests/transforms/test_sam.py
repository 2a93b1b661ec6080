"""The SAM transformation against NumPy, and its conformance as an optax transformation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import transforms
from tests.helpers import numpy_reference as ref


def setup(seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "w": rng.normal(size=(4, 3)).astype(np.float32),
        "b": rng.normal(size=(3,)).astype(np.float32),
    }
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    loss_fn = lambda p: jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(x @ p["w"] + p["b"], y)
    )
    return params, x, y, loss_fn


def as64(t):
    return {k: np.asarray(v, np.float64) for k, v in t.items()}


def test_sam_gradient_is_the_gradient_at_the_ascent_point():
    params, x, y, loss_fn = setup()
    opt = transforms.sam(0.3)
    g = jax.grad(loss_fn)(params)
    out, _ = opt.update(g, opt.init(params), params, loss_fn=loss_fn)
    expected = ref.sam_grad(as64(params), np.float64(x), y, 0.3)
    for k in expected:
        np.testing.assert_allclose(out[k], expected[k], rtol=1e-4, atol=1e-6)


def test_masked_sam_perturbs_only_masked_leaves_with_their_own_norm():
    params, x, y, _ = setup()
    g = {k: np.ones_like(v) for k, v in params.items()}
    e = transforms.sam_perturbation(g, params, 0.5, mask={"w": True, "b": False})
    np.testing.assert_allclose(e["b"], 0.0)
    np.testing.assert_allclose(e["w"], 0.5 / np.sqrt(12.0), rtol=1e-6)
    e_fn = transforms.sam_perturbation(g, params, 0.5, mask=lambda p: {"w": True, "b": False})
    chex.assert_trees_all_close(e_fn, e)


def test_adaptive_sam_perturbation_formula():
    params, *_ = setup()
    g = {k: np.full_like(v, 2.0) for k, v in params.items()}
    e = transforms.sam_perturbation(g, params, 0.1, adaptive=True)
    p = as64(params)
    denom = np.sqrt(sum(np.sum((np.abs(p[k]) * 2.0) ** 2) for k in p))
    for k in p:
        np.testing.assert_allclose(e[k], 0.1 * p[k] ** 2 * 2.0 / denom, rtol=1e-5)


def test_rho_zero_leaves_the_gradient_unchanged_and_chains_with_momentum():
    params, x, y, loss_fn = setup()
    g = jax.grad(loss_fn)(params)
    chained = optax.chain(transforms.sam(0.0), optax.sgd(0.1, momentum=0.9))
    plain = optax.sgd(0.1, momentum=0.9)
    u1, _ = chained.update(g, chained.init(params), params, loss_fn=loss_fn)
    u2, _ = plain.update(g, plain.init(params), params)
    chex.assert_trees_all_close(u1, u2, atol=1e-7)


def test_jit_and_scan_conformance():
    params, x, y, loss_fn = setup()
    opt = optax.chain(transforms.sam(0.2), optax.sgd(0.1))
    state = opt.init(params)
    g = jax.grad(loss_fn)(params)
    eager = opt.update(g, state, params, loss_fn=loss_fn)[0]
    jitted = jax.jit(lambda g, s, p: opt.update(g, s, p, loss_fn=loss_fn))(g, state, params)[0]
    chex.assert_trees_all_close(eager, jitted, atol=1e-6)

    def step(carry, _):
        p, s = carry
        u, s = opt.update(jax.grad(loss_fn)(p), s, p, loss_fn=loss_fn)
        return (optax.apply_updates(p, u), s), loss_fn(p)

    (_, final_state), losses = jax.lax.scan(step, (params, state), None, length=20)
    chex.assert_trees_all_equal_structs(final_state, state)
    assert losses[-1] < losses[0]
    assert jax.tree.map(lambda a: a.dtype, eager) == jax.tree.map(lambda a: a.dtype, params)


def test_sam_requires_loss_fn_and_valid_rho():
    params, x, y, loss_fn = setup()
    opt = transforms.sam(0.1)
    with pytest.raises(TypeError, match="loss_fn"):
        opt.update(params, opt.init(params), params)
    with pytest.raises(ValueError, match="rho >= 0, got -1"):
        transforms.sam(-1.0)


def test_mask_errors_name_the_problem():
    params, *_ = setup()
    g = {k: np.ones_like(v) for k, v in params.items()}
    with pytest.raises(ValueError, match="structure of the parameters"):
        transforms.sam_perturbation(g, params, 0.5, mask={"w": True})
    with pytest.raises(ValueError, match="Python booleans"):
        transforms.sam_perturbation(g, params, 0.5, mask={"w": True, "b": np.array(False)})
