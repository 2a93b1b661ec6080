"""Tests for fedjax_lab.models: shapes, parameter counts, statelessness, registry.

Flax's eager ``init`` compiles one op per parameter shape, which is slow on a small
CPU, so most tests read parameter shapes with ``jax.eval_shape`` and forward passes
use cheap NumPy-filled parameters; ``init_params`` itself is exercised on an MLP.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import models

SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3)]
KEY = jax.random.key(0)


def _num_params(params):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def _dense(n_in, n_out):
    return n_in * n_out + n_out


def _conv(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def _variables_shape(model, shape):
    return jax.eval_shape(model.init, KEY, jnp.zeros((1, *shape), jnp.float32))


def _param_paths(params):
    return [
        "/".join(str(k.key) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]


def _numpy_params(model, shape, seed=0):
    """Fan-in scaled normal kernels, zero biases, unit GroupNorm scales."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.standard_normal(leaf.shape, np.float32) / np.sqrt(fan_in))
        return jnp.ones(leaf.shape) if name == "scale" else jnp.zeros(leaf.shape)

    params = _variables_shape(model, shape)["params"]
    return jax.tree_util.tree_map_with_path(fill, params)


def _check_forward(model, shape, batch):
    """Forward pass: logits have the right shape, are finite and are `head`'s output."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(batch, *shape)), jnp.float32)
    apply = jax.jit(
        lambda p, x: model.apply(
            {"params": p}, x, capture_intermediates=lambda mdl, _: mdl.name == "head"
        )
    )
    out, state = apply(_numpy_params(model, shape), x)
    assert out.shape == (batch, model.num_classes)
    assert out.dtype == jnp.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(state["intermediates"]["head"]["__call__"][0], out)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["mlp", "fedavg_cnn", "emnist_cnn"])
def test_small_models_forward(name, shape):
    _check_forward(models.make_model(name, 7), shape, batch=3)


@pytest.mark.parametrize("name,shape", [("resnet18", (32, 32, 3)), ("vgg11", (8, 8, 1))])
def test_large_models_forward(name, shape):
    _check_forward(models.make_model(name, 10), shape, batch=2)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["resnet18", "vgg11"])
def test_large_models_output_shape(name, shape):
    model = models.make_model(name, 10)
    x = jnp.zeros((2, *shape), jnp.float32)
    out = jax.eval_shape(lambda: model.apply(model.init(KEY, x), x))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("shape", SHAPES)
def test_mlp_param_count(shape):
    d = int(np.prod(shape))
    params = _variables_shape(models.MLP(num_classes=10, hidden_sizes=(50, 20)), shape)
    assert _num_params(params) == _dense(d, 50) + _dense(50, 20) + _dense(20, 10)


@pytest.mark.parametrize("shape", SHAPES)
def test_fedavg_cnn_param_count(shape):
    h, w, c = shape
    ceil_half = lambda n: -(-n // 2)
    hp, wp = ceil_half(ceil_half(h)), ceil_half(ceil_half(w))  # Two SAME 3x3/2 pools.
    expected = (
        _conv(5, c, 64)
        + _conv(5, 64, 64)
        + _dense(hp * wp * 64, 384)
        + _dense(384, 192)
        + _dense(192, 10)
    )
    assert _num_params(_variables_shape(models.FedAvgCNN(num_classes=10), shape)) == expected
    if shape == (32, 32, 3):  # 8 * 8 * 64 = 4096 features after the two pools.
        assert expected == 4864 + 102464 + 1573248 + 73920 + 1930 == 1756426


@pytest.mark.parametrize("shape", SHAPES)
def test_emnist_cnn_param_count(shape):
    h, w, c = shape
    hp, wp = h // 4, w // 4  # Two VALID 2x2/2 pools.
    expected = _conv(5, c, 32) + _conv(5, 32, 64) + _dense(hp * wp * 64, 512) + _dense(512, 62)
    assert _num_params(_variables_shape(models.EmnistCNN(num_classes=62), shape)) == expected


def _resnet18_expected(c_in, num_classes):
    total = _conv(3, c_in, 64, bias=False) + 2 * 64  # Stem conv + GroupNorm.
    channels = 64
    for features, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            total += _conv(3, channels, features, bias=False) + 2 * features
            total += _conv(3, features, features, bias=False) + 2 * features
            if s != 1 or channels != features:
                total += _conv(1, channels, features, bias=False) + 2 * features
            channels = features
    return total + _dense(512, num_classes)


def _assert_groupnorm_only(params):
    paths = _param_paths(params)
    norm_paths = [p for p in paths if "norm" in p]
    assert norm_paths, "expected GroupNorm parameters"
    assert all(p.endswith(("scale", "bias")) for p in norm_paths)
    assert not any("batch" in p.lower() or p.endswith(("mean", "var")) for p in paths)


def test_resnet18_param_count_and_no_batchnorm():
    variables = _variables_shape(models.ResNet18(num_classes=10), (32, 32, 3))
    assert set(variables) == {"params"}
    expected = _resnet18_expected(3, 10)
    assert expected == 11_173_962
    assert _num_params(variables["params"]) == expected
    _assert_groupnorm_only(variables["params"])


def test_vgg11_no_batchnorm():
    variables = _variables_shape(models.VGG11(num_classes=10), (32, 32, 3))
    assert set(variables) == {"params"}
    _assert_groupnorm_only(variables["params"])
    assert sum(p.endswith("scale") for p in _param_paths(variables["params"])) == 8


@pytest.mark.parametrize("name", models.available_models())
def test_head_is_named_head(name):
    params = _variables_shape(models.make_model(name, 4), (8, 8, 1))["params"]
    assert params["head"]["kernel"].shape[-1] == 4
    assert params["head"]["bias"].shape == (4,)


def test_mnist1d_models_have_the_benchmarks_shapes():
    """The MLP (a residual second layer, width 100) and the CNN (lengths 40 -> 19 -> 10 ->
    5, 25 channels) against hand-written forward passes, and their parameter counts."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 40)), jnp.float32)
    mlp = models.make_model("mnist1d_mlp", 10)
    p = models.init_params(mlp, (40,), KEY)
    assert _num_params(p) == 15_210
    h = jax.nn.relu(x @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"])
    h = h + jax.nn.relu(h @ p["hidden_1"]["kernel"] + p["hidden_1"]["bias"])
    expected = h @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(mlp.apply({"params": p}, x), expected, rtol=1e-5, atol=1e-5)

    cnn = models.make_model("mnist1d_cnn", 10)
    p = models.init_params(cnn, (40,), KEY)
    assert _num_params(p) == 5_210
    h = np.asarray(x)[..., None]
    for i, kernel in enumerate((5, 3, 3)):
        w, b = np.asarray(p[f"conv_{i}"]["kernel"]), np.asarray(p[f"conv_{i}"]["bias"])
        padded = np.pad(h, ((0, 0), (1, 1), (0, 0)))
        length = (padded.shape[1] - kernel) // 2 + 1
        h = np.stack(
            [np.einsum("bkc,kcd->bd", padded[:, 2 * t : 2 * t + kernel], w) for t in range(length)],
            axis=1,
        )
        h = np.maximum(h + b, 0.0)
        assert h.shape[1] == (19, 10, 5)[i]
    expected = h.reshape(3, -1) @ np.asarray(p["head"]["kernel"]) + np.asarray(p["head"]["bias"])
    np.testing.assert_allclose(cnn.apply({"params": p}, x), expected, rtol=1e-4, atol=1e-5)


def test_available_models():
    assert models.available_models() == (
        "mlp",
        "fedavg_cnn",
        "emnist_cnn",
        "mnist1d_mlp",
        "mnist1d_cnn",
        "resnet18",
        "vgg11",
        "vit",
    )


def test_make_model_unknown_name():
    with pytest.raises(ValueError, match="resnet19") as info:
        models.make_model("resnet19", 10)
    assert "vgg11" in str(info.value) and "Did you mean 'resnet18'" in str(info.value)


def test_make_model_kwargs():
    mlp = models.make_model("mlp", 10, hidden_sizes=(32,))
    assert mlp.hidden_sizes == (32,) and mlp.num_classes == 10
    assert models.make_model("resnet18", 10, num_groups=16).num_groups == 16
    with pytest.raises(TypeError, match="dropout"):
        models.make_model("emnist_cnn", 10, dropout=0.5)


def test_init_params():
    shape = (28, 28, 1)
    model = models.MLP(num_classes=10, hidden_sizes=(16,))
    params = models.init_params(model, shape, KEY)
    expected = _variables_shape(model, shape)["params"]
    assert jax.tree.structure(params) == jax.tree.structure(expected)
    for p, e in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
        assert p.shape == e.shape and p.dtype == jnp.float32 and np.all(np.isfinite(p))
    assert np.any(params["hidden_0"]["kernel"] != 0)
    again = models.init_params(model, shape, KEY)
    assert all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again))
    )


@pytest.mark.parametrize("name", ["mlp", "emnist_cnn"])
def test_deterministic_and_differentiable(name):
    shape = (28, 28, 1)
    model = models.make_model(name, 10)
    params = _numpy_params(model, shape)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, *shape)), jnp.float32)
    y = jnp.arange(4)

    def loss(p):
        logits = model.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    value, grads = value_and_grad(params)
    again, grads_again = value_and_grad(params)
    assert value == again
    assert all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_again))
    )
    assert np.isfinite(value)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert all(np.any(g != 0) for g in leaves)


def test_vit_forward_parameter_count_and_split_parts():
    model = models.make_model("vit", 10, patch_size=2, dim=16, depth=2, heads=2, mlp_ratio=2)
    _check_forward(model, (8, 8, 1), batch=3)
    params = _numpy_params(model, (8, 8, 1))
    tokens, dim = 16, 16  # (8 / 2)^2 patches of 2 x 2 x 1
    block = 2 * 2 * dim + 4 * _dense(dim, dim) + _dense(dim, 2 * dim) + _dense(2 * dim, dim)
    expected = _dense(4, dim) + tokens * dim + 2 * block + 2 * dim + _dense(dim, 10)
    assert _num_params(params) == expected
    assert sorted(params) == ["body", "embedding", "head", "norm"]
    # The client's input embedding and classifier around the server's body is the model.
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 8, 8, 1)), jnp.float32)
    variables = {"params": params}
    hidden = model.apply(variables, model.apply(variables, x, method="embed"), method="encode")
    np.testing.assert_allclose(
        model.apply(variables, hidden, method="classify"), model.apply(variables, x), rtol=1e-6
    )
    assert hidden.shape == (3, tokens, dim)
    with pytest.raises(ValueError, match="divisible by patch_size=3"):
        models.make_model("vit", 10, patch_size=3).init(KEY, jnp.zeros((1, 8, 8, 1)))
