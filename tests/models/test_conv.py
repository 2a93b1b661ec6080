"""Tests for fedjax_lab.models.conv and the ``conv`` switch of the CNNs.

``conv2d`` and ``max_pool`` are compared with XLA's own convolution and flax's max pooling
(values and first derivatives): plain, jitted, vmapped with per-client kernels, and inside
``lax.scan``. Tolerances are float32 rounding: on CPU the larger convolutions run on a
different XLA kernel (Eigen instead of YNNPACK), so values are close, not bit-identical.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import models
from fedjax_lab.models import cnn
from fedjax_lab.models import conv

RTOL, ATOL = 2e-5, 2e-5

# (x shape [B, H, W, C_in], kernel shape [kh, kw, C_in, C_out]); the 17+ channel cases take
# the CPU path that steers the convolution to Eigen.
CASES = [
    ((2, 8, 8, 1), (5, 5, 1, 4)),
    ((1, 7, 9, 3), (3, 3, 3, 5)),
    ((3, 6, 5, 2), (2, 4, 2, 3)),  # Even kernel: SAME pads 0 before, 1 after (height).
    ((2, 5, 5, 4), (1, 1, 4, 6)),
    ((3, 9, 7, 20), (3, 2, 20, 24)),
    ((2, 14, 14, 32), (5, 5, 32, 64)),  # The EMNIST CNN's second layer.
    ((1, 11, 6, 18), (4, 3, 18, 17)),
]


def _reference(x, kernel, padding):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _random(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _assert_close(actual, expected):
    """Entrywise ``|a - e| <= ATOL * max|e| + RTOL * |e|`` (scale-aware for sums of products)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = max(float(np.max(np.abs(expected))), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL * scale)


def _vjps(fn, x, kernel, g):
    value, pullback = jax.vjp(fn, x, kernel)
    return (value, *pullback(g))


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("x_shape,k_shape", CASES)
def test_conv2d_value_and_grads(x_shape, k_shape, padding):
    x, kernel = _random(x_shape, 0), _random(k_shape, 1)
    expected = _reference(x, kernel, padding)
    g = _random(expected.shape, 2)
    want = _vjps(lambda a, b: _reference(a, b, padding), x, kernel, g)
    got = _vjps(lambda a, b: conv.conv2d(a, b, padding), x, kernel, g)
    jitted = jax.jit(lambda a, b, c: _vjps(lambda u, v: conv.conv2d(u, v, padding), a, b, c))
    for actual in (got, jitted(x, kernel, g)):
        for w, a in zip(want, actual, strict=True):
            _assert_close(a, w)


def test_conv2d_grad_of_scalar_loss_matches_autodiff():
    x, kernel = _random((4, 10, 10, 20), 3), _random((5, 5, 20, 24), 4)

    def loss(conv_fn, x, kernel):
        return jnp.sum(jnp.tanh(conv_fn(x, kernel, "SAME")) ** 2)

    want = jax.grad(loss, argnums=(1, 2))(_reference, x, kernel)
    got = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0)(conv.conv2d, x, kernel)
    for w, a in zip(want, got, strict=True):
        _assert_close(a, w)


@pytest.mark.parametrize("loop", [True, False])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("x_shape,k_shape", [CASES[1], CASES[4]])
def test_conv2d_under_vmap_with_per_client_kernels(x_shape, k_shape, padding, loop):
    n = 3
    x = _random((n, *x_shape), 5)
    kernel = _random((n, *k_shape), 6)

    def ours(x, kernel, padding):
        return conv.conv2d(x, kernel, padding, loop_under_vmap=loop)

    def loss(conv_fn, x, kernel):
        return jnp.sum(jnp.sin(conv_fn(x, kernel, padding)))

    def per_client(conv_fn):
        return jax.vmap(jax.value_and_grad(lambda a, b: loss(conv_fn, a, b), argnums=(0, 1)))

    want = per_client(_reference)(x, kernel)
    got = jax.jit(per_client(ours))(x, kernel)
    for w, a in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        _assert_close(a, w)
    # Also vmap outside grad (grad of a vmapped function).
    outer = jax.grad(lambda k: jnp.sum(jax.vmap(lambda a, b: ours(a, b, padding))(x, k)))
    outer_ref = jax.grad(lambda k: jnp.sum(jax.vmap(lambda a, b: _reference(a, b, padding))(x, k)))
    _assert_close(jax.jit(outer)(kernel), outer_ref(kernel))


@pytest.mark.parametrize("loop", [True, False])
def test_conv2d_vmap_grouped_convolution_only_without_loop(loop):
    x, kernel = _random((3, 2, 8, 8, 20), 7), _random((3, 3, 3, 20, 24), 8)

    def loss(a, b):
        return jnp.sum(conv.conv2d(a, b, loop_under_vmap=loop) ** 2)

    hlo = jax.jit(jax.vmap(jax.grad(loss, argnums=1))).lower(x, kernel).as_text()
    grouped = "feature_group_count = 3" in hlo or "batch_group_count = 3" in hlo
    assert grouped != loop


def test_conv2d_under_vmap_with_shared_kernel():
    x, kernel = _random((3, 2, 9, 9, 20), 9), _random((3, 3, 20, 24), 10)
    got = jax.jit(jax.vmap(lambda a: conv.conv2d(a, kernel)))(x)
    _assert_close(got, jax.vmap(lambda a: _reference(a, kernel, "SAME"))(x))
    g_got = jax.grad(lambda k: jnp.sum(jax.vmap(lambda a: conv.conv2d(a, k))(x) ** 2))(kernel)
    g_want = jax.grad(lambda k: jnp.sum(jax.vmap(lambda a: _reference(a, k, "SAME"))(x) ** 2))(
        kernel
    )
    _assert_close(g_got, g_want)


@pytest.mark.parametrize("unroll", [1, True])
def test_conv2d_inside_scan(unroll):
    """Three SGD steps on one kernel in ``lax.scan`` match the autodiff reference."""
    x = _random((4, 3, 8, 8, 18), 11)  # One batch per step.
    kernel = _random((3, 3, 18, 20), 12) * 0.1

    def train(conv_fn, kernel):
        def step(k, xb):
            loss, g = jax.value_and_grad(lambda k: jnp.mean(conv_fn(xb, k, "SAME") ** 2))(k)
            return k - 0.1 * g, loss

        return jax.lax.scan(step, kernel, x, unroll=unroll)

    want = train(_reference, kernel)
    got = jax.jit(lambda k: train(conv.conv2d, k))(kernel)
    for w, a in zip(want, got, strict=True):
        _assert_close(a, w)


def test_conv2d_rejects_bad_inputs():
    x, kernel = jnp.zeros((1, 5, 5, 2)), jnp.zeros((3, 3, 2, 4))
    with pytest.raises(ValueError, match="'CIRCULAR'"):
        conv.conv2d(x, kernel, "CIRCULAR")
    with pytest.raises(ValueError, match=r"C_in=2 .* expects 3"):
        conv.conv2d(x, jnp.zeros((3, 3, 3, 4)))
    with pytest.raises(ValueError, match=r"\(5, 5, 2\)"):
        conv.conv2d(x[0], kernel)


def test_conv_module_matches_flax_conv():
    x = _random((2, 12, 12, 3), 13)
    ours = conv.Conv(20, (5, 5), padding="SAME")
    theirs = nn.Conv(20, (5, 5), padding="SAME")
    key = jax.random.key(0)
    p_ours, p_theirs = ours.init(key, x), theirs.init(key, x)
    assert jax.tree.structure(p_ours) == jax.tree.structure(p_theirs)
    for a, b in zip(jax.tree.leaves(p_ours), jax.tree.leaves(p_theirs), strict=True):
        np.testing.assert_array_equal(a, b)  # Same names, shapes and initial values.
    _assert_close(ours.apply(p_theirs, x), theirs.apply(p_theirs, x))
    # Several leading batch axes are flattened like flax does.
    x5 = x.reshape((1, 2, 12, 12, 3))
    _assert_close(ours.apply(p_theirs, x5), theirs.apply(p_theirs, x5))
    with pytest.raises(ValueError, match="kernel_size of two ints"):
        conv.Conv(4, (3,)).init(key, x)


POOL_CASES = [
    ((3, 28, 28, 5), (2, 2), (2, 2), "VALID"),
    ((2, 9, 7, 3), (2, 2), (2, 2), "VALID"),  # Odd sizes are floored.
    ((2, 9, 7, 3), (3, 3), (2, 2), "SAME"),  # FedAvgCNN's pooling; overlapping windows.
    ((2, 8, 8, 4), (3, 3), (2, 2), "SAME"),
    ((2, 7, 7, 2), (3, 2), (1, 2), "VALID"),
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shape,window,strides,padding", POOL_CASES)
def test_max_pool_matches_flax(shape, window, strides, padding, ties):
    rng = np.random.default_rng(14)
    raw = rng.integers(0, 3, shape) if ties else rng.normal(size=shape)  # Ties: many equal maxima.
    x = jnp.asarray(raw, jnp.float32)

    def ref(x):
        return nn.max_pool(x, window, strides=strides, padding=padding)

    def ours(x):
        return conv.max_pool(x, window, strides, padding)

    g = _random(ref(x).shape, 15)
    want_y, want_pull = jax.vjp(ref, x)
    got_y, got_pull = jax.vjp(jax.jit(ours), x)
    np.testing.assert_array_equal(got_y, want_y)
    np.testing.assert_array_equal(got_pull(g)[0], want_pull(g)[0])


def test_max_pool_rejects_bad_inputs():
    with pytest.raises(ValueError, match="window"):
        conv.max_pool(jnp.zeros((1, 4, 4, 1)), (2,))
    with pytest.raises(ValueError, match="'FULL'"):
        conv.max_pool(jnp.zeros((1, 4, 4, 1)), (2, 2), padding="FULL")
    with pytest.raises(ValueError, match="does not fit"):
        conv.max_pool(jnp.zeros((1, 1, 4, 1)), (2, 2))


# --------------------------------------------------------------------------- #
# The CNNs' ``conv`` switch.
# --------------------------------------------------------------------------- #


def _cnn_params(model, shape, seed=0):
    """Fan-in scaled normal kernels, small normal biases (cheaper than flax's eager init)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *shape)))["params"]

    def fill(path, leaf):
        if path[-1].key == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), jnp.float32)
        return jnp.asarray(0.1 * rng.normal(size=leaf.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.parametrize(
    "name,shape",
    [("emnist_cnn", (28, 28, 1)), ("fedavg_cnn", (32, 32, 3)), ("emnist_cnn", (9, 7, 2))],
)
def test_cnn_conv_choices_share_params_and_outputs(name, shape):
    flax_model = models.make_model(name, 10, conv="flax")
    custom_model = models.make_model(name, 10, conv="custom")
    dummy = jnp.zeros((1, *shape))
    key = jax.random.key(0)
    tree_flax = jax.eval_shape(flax_model.init, key, dummy)
    tree_custom = jax.eval_shape(custom_model.init, key, dummy)
    assert jax.tree.structure(tree_flax) == jax.tree.structure(tree_custom)
    assert jax.tree.map(lambda a: a.shape, tree_flax) == jax.tree.map(
        lambda a: a.shape, tree_custom
    )

    params = _cnn_params(flax_model, shape)
    x = _random((5, *shape), 16)
    y = jnp.arange(5) % 10

    def loss(model, p):
        logits = model.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    (l_flax, out_flax), g_flax = jax.jit(
        jax.value_and_grad(lambda p: loss(flax_model, p), has_aux=True)
    )(params)
    (l_custom, out_custom), g_custom = jax.jit(
        jax.value_and_grad(lambda p: loss(custom_model, p), has_aux=True)
    )(params)
    _assert_close(out_custom, out_flax)
    np.testing.assert_allclose(l_custom, l_flax, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_custom), jax.tree.leaves(g_flax), strict=True):
        _assert_close(a, b)


def test_cnn_init_is_identical_across_conv_choices():
    x = jnp.zeros((1, 12, 12, 1))
    a = models.EmnistCNN(10, conv="flax").init(jax.random.key(3), x)
    b = models.EmnistCNN(10, conv="custom").init(jax.random.key(3), x)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)


def test_conv_auto_resolves_by_backend():
    expected = "custom" if jax.default_backend() == "cpu" else "flax"
    assert cnn.resolve_conv("auto") == expected
    assert cnn.resolve_conv("flax") == "flax" and cnn.resolve_conv("custom") == "custom"
    assert models.make_model("emnist_cnn", 10).conv == "auto"
    assert models.make_model("fedavg_cnn", 10, conv="flax").conv == "flax"
    with pytest.raises(ValueError, match="'cudnn'"):
        jax.eval_shape(
            models.EmnistCNN(10, conv="cudnn").init, jax.random.key(0), jnp.zeros((1, 8, 8, 1))
        )
