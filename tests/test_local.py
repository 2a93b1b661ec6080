"""Local training hooks: step counts, gradient hooks, trained subsets, phases, partitions."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import algorithms
from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab import objectives
from fedjax_lab import partition
from fedjax_lab import transforms
from tests.helpers import numpy_reference as ref

K, B, D, C = 6, 5, 4, 3


def apply_fn(params, x):
    return x @ params["w"] + params["b"]


LOSS = objectives.cross_entropy_loss(apply_fn)


def problem(seed=0, clients=None):
    rng = np.random.default_rng(seed)
    lead = () if clients is None else (clients,)
    params = {
        "w": rng.normal(size=(D, C)).astype(np.float32) * 0.5,
        "b": rng.normal(size=(C,)).astype(np.float32) * 0.1,
    }
    batches = {
        "x": rng.normal(size=lead + (K, B, D)).astype(np.float32),
        "y": rng.integers(0, C, size=lead + (K, B)).astype(np.int32),
    }
    return params, batches


def test_a_client_with_fewer_steps_ends_where_its_own_short_run_ends():
    params, batches = problem()
    opt = optax.sgd(0.3, momentum=0.9)
    for count in (1, 3, K):
        masked = local.local_train(opt, LOSS, params, batches, jax.random.key(0), step_count=count)
        short = jax.tree.map(lambda b: b[:count], batches)
        own = local.local_train(opt, LOSS, params, short, jax.random.key(0))
        chex.assert_trees_all_equal(masked.params, own.params)
        chex.assert_trees_all_equal(masked.opt_state, own.opt_state)
        assert np.asarray(masked.active).tolist() == [k < count for k in range(K)]


def test_step_counts_inside_a_round_are_per_client():
    n = 4
    params, batches = problem(clients=n)
    counts = np.array([1, 2, 6, 4])
    alg = algorithms.dfedavg(
        LOSS, learning_rate=0.3, num_clients=n, step_counts=algorithms.fixed_step_counts(counts)
    )
    state, metrics = alg.round(alg.init(params), jnp.eye(n), batches, jax.random.key(0))
    for i in range(n):
        xs = np.asarray(batches["x"][i, : counts[i]], np.float64)
        expected = ref.local_steps(
            {k: np.asarray(v, np.float64) for k, v in params.items()}, xs, batches["y"][i], 0.3
        )
        for k in expected:
            np.testing.assert_allclose(np.asarray(state.params[k][i]), expected[k], atol=2e-5)
    drawn = algorithms.uniform_step_counts(2, 4)(jax.random.key(1), jnp.arange(1000))
    assert set(np.asarray(drawn).tolist()) == {2, 3, 4}


@jax.custom_vjp
def _black_box(x):
    return x


def _no_backward(x):
    return x, None


def _refuse(residual, g):
    raise AssertionError("the black-box model was differentiated")


_black_box.defvjp(_no_backward, _refuse)


def two_point_estimate(mu=1e-2, directions=8):
    """A test-local zeroth-order estimator: it uses only loss_fn and key."""

    def update(updates, state, params=None, *, loss_fn, key, **extra):
        del updates, extra
        leaves, tree = jax.tree.flatten(params)

        def one(k):
            keys = jax.random.split(k, len(leaves))
            u = jax.tree.unflatten(
                tree, [jax.random.normal(q, l.shape) for q, l in zip(keys, leaves)]
            )
            plus = jax.tree.map(lambda p, d: p + mu * d, params, u)
            minus = jax.tree.map(lambda p, d: p - mu * d, params, u)
            scale = (loss_fn(plus) - loss_fn(minus)) / (2 * mu)
            return jax.tree.map(lambda d: scale * d, u)

        estimates = jax.vmap(one)(jax.random.split(key, directions))
        return jax.tree.map(lambda e: jnp.mean(e, axis=0), estimates), state

    return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)


def test_a_forward_only_model_trains_through_the_no_gradient_hook():
    forward_only = objectives.cross_entropy_loss(lambda p, x: _black_box(apply_fn(p, x)))
    params, batches = problem()
    with pytest.raises(AssertionError, match="differentiated"):
        jax.grad(forward_only)(params, jax.tree.map(lambda b: b[0], batches))
    opt = optax.chain(two_point_estimate(), optax.sgd(0.2))
    long = jax.tree.map(lambda b: jnp.tile(b, (10,) + (1,) * (b.ndim - 1)), batches)
    result = jax.jit(
        lambda p, b: local.local_train(opt, forward_only, p, b, jax.random.key(0), gradient=None)
    )(params, long)
    full = {"x": batches["x"].reshape(-1, D), "y": batches["y"].reshape(-1)}
    assert float(LOSS(result.params, full)) < 0.8 * float(LOSS(params, full))


def test_per_example_clipped_gradient_matches_numpy():
    params, batches = problem()
    x, y = np.asarray(batches["x"][0], np.float64), batches["y"][0]
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    clip = 0.3
    expected = {k: np.zeros_like(v) for k, v in p64.items()}
    for b in range(B):
        g = ref.grad(p64, x[b : b + 1], y[b : b + 1])
        scale = min(1.0, clip / ref.norm(g))
        expected = {k: expected[k] + scale * g[k] / B for k in g}
    hook = gradients.per_example_clipped_gradient(clip)
    loss, grads = hook(LOSS, params, jax.tree.map(lambda b: b[0], batches), jax.random.key(0))
    for k in expected:
        np.testing.assert_allclose(np.asarray(grads[k]), expected[k], atol=1e-6)
    np.testing.assert_allclose(float(loss), ref.loss(p64, x, y), rtol=1e-5)
    with pytest.raises(ValueError, match="clip_norm > 0"):
        gradients.per_example_clipped_gradient(-1.0)


def test_frozen_leaves_do_not_move_and_sam_sees_the_trained_part_only():
    params, batches = problem()
    keep = {"w": False, "b": True}
    opt = optax.chain(transforms.sam(0.5), optax.sgd(0.3))
    result = local.local_train(opt, LOSS, params, batches, jax.random.key(0), trains=keep)
    np.testing.assert_array_equal(np.asarray(result.params["w"]), params["w"])
    assert result.opt_state is not None
    # The same as SAM on a model whose only parameter is b.
    w = params["w"]
    only_b = lambda p, batch: LOSS({"w": w, "b": p["b"]}, batch)
    alone = local.local_train(opt, only_b, {"b": params["b"]}, batches, jax.random.key(0))
    np.testing.assert_allclose(
        np.asarray(result.params["b"]), np.asarray(alone.params["b"]), atol=1e-6
    )
    with pytest.raises(ValueError, match="boolean pytree"):
        local.local_train(opt, LOSS, params, batches, jax.random.key(0), trains={"w": 1, "b": 0})


def test_phases_train_the_head_then_the_body_on_their_own_batches():
    params = {
        "body": {"w": np.ones((D, C), np.float32) * 0.1},
        "head": {"b": np.zeros((C,), np.float32)},
    }
    loss = objectives.cross_entropy_loss(lambda p, x: x @ p["body"]["w"] + p["head"]["b"])
    _, batches = problem()
    labels = partition.resolve(partition.head_labels, params)
    phases = local.check_phases(
        [
            local.Phase(optax.sgd(0.01), steps=2, trains="personal"),
            local.Phase(optax.sgd(0.5), trains="shared"),
        ]
    )
    result = local.run_phases(phases, loss, params, batches, jax.random.key(0), labels=labels)
    head_only = local.local_train(
        optax.sgd(0.01),
        loss,
        params,
        jax.tree.map(lambda b: b[:2], batches),
        jax.random.key(0),
        trains=partition.mask(labels, params, "personal"),
    )
    body_then = local.local_train(
        optax.sgd(0.5),
        loss,
        head_only.params,
        jax.tree.map(lambda b: b[2:], batches),
        jax.random.key(0),
        trains=partition.mask(labels, params, "shared"),
        first_step=2,
    )
    chex.assert_trees_all_close(result.params, body_then.params)
    assert result.losses.shape == (K,)
    with pytest.raises(ValueError, match="Only the last phase"):
        local.check_phases([local.Phase(optax.sgd(1.0)), local.Phase(optax.sgd(1.0), steps=1)])
    with pytest.raises(ValueError, match="need 9 batches"):
        local.run_phases(
            [local.Phase(optax.sgd(1.0), steps=9)], loss, params, batches, jax.random.key(0)
        )


def test_partition_labels_select_merge_and_optax():
    params = {
        "hidden_0": {"kernel": jnp.ones((2, 3))},
        "head": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)},
    }
    labels = partition.head_labels(params)
    assert labels == {
        "hidden_0": {"kernel": "shared"},
        "head": {"kernel": "personal", "bias": "personal"},
    }
    shared, personal = partition.split(params, partition.mask(labels, params))
    assert shared["head"]["kernel"] is None and personal["hidden_0"]["kernel"] is None
    chex.assert_trees_all_equal(partition.merge(shared, personal), params)
    opt = optax.multi_transform(
        {"shared": optax.sgd(1.0), "personal": optax.set_to_zero()}, partition.head_labels
    )
    updates, _ = opt.update(jax.tree.map(jnp.ones_like, params), opt.init(params), params)
    assert float(jnp.sum(jnp.abs(updates["head"]["kernel"]))) == 0.0
    assert float(jnp.sum(updates["hidden_0"]["kernel"])) == -6.0
    with pytest.raises(ValueError, match="Unknown layer.*'tail'.*head, hidden_0"):
        partition.personal_layers(["tail"])(params)
