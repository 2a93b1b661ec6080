"""Zeroth-order estimators: unbiased on a quadratic, variance falling as 1/q as theory says,
replayable directions, training a model that cannot be differentiated; the black-box
wrapper."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import black_box
from fedjax_lab import local
from fedjax_lab import transforms
from fedjax_lab.transforms import zeroth_order as zo

RNG = np.random.default_rng(0)
A = np.diag([1.0, 2.0, 0.5, 3.0, 1.5])  # L(y) = 0.5 (y - c)^T A (y - c)
CENTER = RNG.normal(size=5)
PARAMS = {"a": jnp.asarray(RNG.normal(size=3), jnp.float32), "b": jnp.ones(2, jnp.float32)}
D = 5


def quadratic(p):
    y = jnp.concatenate([p["a"], p["b"]]) - CENTER
    return 0.5 * y @ (A @ y)


GRAD = np.concatenate([np.asarray(PARAMS["a"]), np.asarray(PARAMS["b"])]) - CENTER
GRAD = A @ GRAD


def estimates(transform, n, params=PARAMS):
    """``n`` independent estimates ``[n, d]``, one per key."""

    def one(key):
        g, _ = transform.update(None, transform.init(params), params, loss_fn=quadratic, key=key)
        return jnp.concatenate([g["a"], g["b"]])

    return np.asarray(jax.vmap(one)(jax.random.split(jax.random.key(1), n)), np.float64)


@pytest.mark.parametrize(
    "transform",
    [
        zo.zo_gradient(0.05),
        zo.zo_gradient(0.05, estimator="forward"),
        zo.zo_gradient(0.05, distribution="sphere"),
        zo.zo_gradient(0.05, distribution="rademacher"),
        zo.spsa(0.05),
    ],
    ids=["two_point", "forward", "sphere", "rademacher", "spsa"],
)
def test_estimates_are_unbiased_on_a_quadratic(transform):
    g = estimates(transform, 20000)
    standard_error = g.std(axis=0) / np.sqrt(len(g))
    # On a quadratic the smoothed gradient is the gradient; 4.5 standard errors per coordinate.
    assert np.all(np.abs(g.mean(axis=0) - GRAD) < 4.5 * standard_error), (g.mean(0), GRAD)


@pytest.mark.parametrize(
    "distribution, excess", [("gaussian", D + 1), ("sphere", D - 1), ("rademacher", D - 1)]
)
def test_the_variance_falls_as_one_over_q(distribution, excess):
    for q in (1, 4, 16):
        g = estimates(zo.zo_gradient(0.05, q, distribution=distribution), 8000)
        error = np.mean(np.sum((g - GRAD) ** 2, axis=1))
        theory = excess * np.sum(GRAD**2) / q  # E ||g - grad||^2 for the two-point estimate
        assert error == pytest.approx(theory, rel=0.12), (q, error, theory)


def test_rademacher_directions_are_signs_of_balanced_bits():
    u = np.asarray(zo.direction(jax.random.key(3), 0, 100_001, "rademacher"))
    assert set(np.unique(u)) == {-1.0, 1.0} and abs(u.mean()) < 0.01
    assert np.array_equal(u, np.asarray(zo.direction(jax.random.key(3), 0, 100_001, "rademacher")))


def test_a_step_is_replayed_from_its_key_and_the_direction_index():
    key = jax.random.key(7)
    g, _ = zo.zo_gradient(0.05, 3).update(None, (), PARAMS, loss_fn=quadratic, key=key)
    flat = jnp.concatenate([PARAMS["a"], PARAMS["b"]])
    replayed = 0.0
    for k in range(3):
        u = zo.direction(key, k, D)
        unflat = lambda v: {"a": v[:3], "b": v[3:]}
        slope = (quadratic(unflat(flat + 0.05 * u)) - quadratic(unflat(flat - 0.05 * u))) / 0.1
        replayed = replayed + slope * u / 3
    np.testing.assert_allclose(jnp.concatenate([g["a"], g["b"]]), replayed, rtol=1e-5)


def test_zo_trains_a_model_that_cannot_be_differentiated():
    x = RNG.normal(size=(4, 8, 5)).astype(np.float32)  # K = 4 steps, batch 8, 5 features
    y = (x @ np.arange(5.0) > 0).astype(np.float32)

    def host_loss(w, xb, yb):  # NumPy, outside JAX: no gradient can flow through it
        logits = xb @ w
        return np.mean(np.logaddexp(0.0, logits) - yb * logits).astype(np.float32)

    def black_box(params, batch):
        shape = jax.ShapeDtypeStruct((), jnp.float32)
        return jax.pure_callback(
            host_loss, shape, params["w"], batch["x"], batch["y"], vmap_method="sequential"
        )

    params = {"w": jnp.zeros(5, jnp.float32)}
    batches = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    with pytest.raises(Exception):  # the black box is not differentiable
        jax.grad(black_box)(params, jax.tree.map(lambda b: b[0], batches))
    opt = optax.chain(transforms.zo_gradient(1e-2, 8), optax.sgd(0.5))
    result = jax.jit(
        lambda p: local.local_train(opt, black_box, p, batches, jax.random.key(0), gradient=None)
    )(params)
    losses = np.asarray(result.losses)
    assert losses[-1] < losses[0] - 0.05, losses
    assert float(black_box(result.params, jax.tree.map(lambda b: b[0], batches))) < losses[0]


def test_spsa_gc_minimizes_a_quadratic():
    opt = zo.spsa_gc(0.2, 0.05, num_directions=4)
    params, state = PARAMS, opt.init(PARAMS)
    start = float(quadratic(params))
    for t in range(60):
        updates, state = opt.update(None, state, params, loss_fn=quadratic, key=jax.random.key(t))
        params = optax.apply_updates(params, updates)
    assert float(quadratic(params)) < 0.05 * start
    assert int(state.count) == 60


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="mu > 0"):
        zo.zo_gradient(0.0)
    with pytest.raises(ValueError, match="num_directions"):
        zo.zo_gradient(0.1, 0)
    with pytest.raises(ValueError, match="Unknown ZO estimator 'central'"):
        zo.zo_gradient(0.1, estimator="central")
    with pytest.raises(ValueError, match="Unknown ZO direction distribution 'uniform'"):
        zo.zo_gradient(0.1, distribution="uniform")
    with pytest.raises(ValueError, match="pass loss_fn="):
        zo.zo_gradient(0.1).update(None, (), PARAMS, key=jax.random.key(0))
    with pytest.raises(ValueError, match="beta in"):
        zo.spsa_gc(0.1, 0.1, beta=1.0)


def test_a_black_box_runs_forward_refuses_gradients_and_zo_trains_through_it():
    frozen = {"w": jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32)}
    api = black_box.black_box(lambda x: x @ frozen["w"], name="the frozen classifier")
    x = jnp.asarray(RNG.normal(size=(4, 8, 5)), jnp.float32)  # K = 4 steps, batch 8
    labels = jnp.argmax(x @ jnp.ones((5, 3)), axis=-1)  # a task the frozen model does not solve

    def loss(prompt, batch):  # a prompt added to the input, the model behind an API
        logits = api(batch["x"] + prompt["p"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    batches = {"x": x, "y": labels}
    first = jax.tree.map(lambda b: b[0], batches)
    prompt = {"p": jnp.zeros(5, jnp.float32)}
    np.testing.assert_allclose(jax.jit(jax.vmap(api))(x), x @ frozen["w"], rtol=1e-6)
    attempts = (
        lambda: jax.grad(loss)(prompt, first),
        lambda: jax.jvp(lambda p: loss(p, first), (prompt,), (prompt,)),
        lambda: jax.vjp(api, first["x"]),
    )
    for attempt in attempts:
        with pytest.raises(black_box.BlackBoxDifferentiationError, match="frozen classifier"):
            attempt()
    opt = optax.chain(transforms.zo_gradient(1e-2, 8), optax.sgd(1.0))
    result = local.local_train(opt, loss, prompt, batches, jax.random.key(0), gradient=None)
    assert float(loss(result.params, first)) < float(loss(prompt, first))
