"""Ghost clipping: per-example norms and the clipped mean from a model's layers equal those
of explicit per-example gradients; models it cannot handle fall back."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import ghost_clipping
from fedjax_lab import gradients
from fedjax_lab import models
from fedjax_lab.objectives import cross_entropy_loss


class Strided(nn.Module):
    """flax convolutions with strides, explicit and VALID padding, dilation, and a dense
    layer applied at every position (the Gram-matrix path)."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(6, (3, 3), strides=2, padding="SAME", name="a")(x))
        x = nn.relu(nn.Conv(5, (2, 3), padding=((1, 0), (2, 1)), kernel_dilation=2, name="b")(x))
        x = nn.relu(nn.Conv(4, (2, 2), padding="VALID", use_bias=False, name="c")(x))
        x = nn.relu(nn.Dense(3, name="per_position")(x.reshape(x.shape[0], -1, 4)))
        return nn.Dense(7, name="head")(x.reshape(x.shape[0], -1))


class Strided1d(nn.Module):
    """1-D flax convolutions: stride, explicit and SAME padding, dilation, no bias."""

    @nn.compact
    def __call__(self, x):
        x = x[..., None]  # [B, L, 1]
        x = nn.relu(nn.Conv(4, (5,), strides=(2,), padding=((1, 1),), name="a")(x))
        x = nn.relu(nn.Conv(3, (3,), padding="SAME", kernel_dilation=2, name="b")(x))
        x = nn.relu(nn.Conv(3, (2,), padding="VALID", use_bias=False, name="c")(x))
        return nn.Dense(5, name="head")(x.reshape(x.shape[0], -1))


class LibraryConvs(nn.Module):
    """The library's stride-1 convolution (what the CNNs use on CPU), SAME and VALID."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(models.Conv(5, (3, 3), padding="SAME", name="same")(x))
        x = nn.relu(models.Conv(4, (2, 2), padding="VALID", name="valid")(x))
        return nn.Dense(6, name="head")(x.reshape(x.shape[0], -1))


class Normalized(nn.Module):
    """A GroupNorm's scale and bias are outside the dense and convolution layers."""

    @nn.compact
    def __call__(self, x):
        x = nn.GroupNorm(num_groups=2, name="norm")(nn.Conv(4, (3, 3), name="conv")(x))
        return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


class Shared(nn.Module):
    """One dense layer called twice: its per-example gradient is a sum, not one product."""

    @nn.compact
    def __call__(self, x):
        layer = nn.Dense(x.shape[-1], name="twice")
        return nn.Dense(3, name="head")(layer(nn.relu(layer(x))))


def setup(model, shape, classes, scale=3.0):
    params = models.init_params(model, shape, jax.random.key(0))
    loss_fn = cross_entropy_loss(lambda p, x: model.apply({"params": p}, x))
    key = jax.random.key(1)
    batch = {
        "x": scale * jax.random.normal(key, (6, *shape)),
        "y": jax.random.randint(key, (6,), 0, classes),
    }
    return loss_fn, params, batch


def per_example_squared_norms(loss_fn, params, batch):
    def one(example):
        g = jax.grad(loss_fn)(params, jax.tree.map(lambda x: x[None], example))
        return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(g))

    return jax.lax.map(one, batch)


CASES = {
    "mlp": (lambda: models.make_model("mlp", 10, hidden_sizes=(16, 8)), (12,), 10),
    "library_convs": (lambda: LibraryConvs(), (9, 8, 2), 6),
    "flax_convs": (lambda: Strided(), (11, 9, 2), 7),
    "flax_1d_convs": (lambda: Strided1d(), (17,), 5),
    "mnist1d_cnn": (lambda: models.make_model("mnist1d_cnn", 10), (40,), 10),
}


@pytest.mark.parametrize("name", CASES)
def test_norms_and_clipped_mean_equal_those_of_per_example_gradients(name):
    make, shape, classes = CASES[name]
    loss_fn, params, batch = setup(make(), shape, classes)
    squared = jax.jit(lambda p, b: ghost_clipping.squared_norms(loss_fn, p, b))(params, batch)
    expected = per_example_squared_norms(loss_fn, params, batch)
    np.testing.assert_allclose(squared, expected, rtol=1e-4)
    clip = float(np.median(np.sqrt(expected)))  # half the examples are clipped
    ghost = gradients.per_example_clipped_gradient(clip, strategy="ghost")
    explicit = gradients.per_example_clipped_gradient(clip, strategy="map")
    (loss, g), (loss_ref, g_ref) = [
        jax.jit(lambda p, b, hook=hook: hook(loss_fn, p, b, None))(params, batch)
        for hook in (ghost, explicit)
    ]
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-6)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_models_it_cannot_handle_fall_back_to_per_example_gradients():
    normalized = setup(Normalized(), (6, 6, 2), 3)
    shared = setup(Shared(), (5,), 3)
    for loss_fn, params, batch in (normalized, shared):
        assert ghost_clipping.squared_norms(loss_fn, params, batch) is None
        assert ghost_clipping.clipped_mean_gradient(loss_fn, params, batch, 1.0) is None
        with pytest.raises(ValueError, match="strategy='ghost' needs a flax model"):
            gradients.per_example_clipped_gradient(1.0, strategy="ghost")(
                loss_fn, params, batch, None
            )
    loss_fn, params, batch = shared
    auto = gradients.per_example_clipped_gradient(0.5)(loss_fn, params, batch, None)
    explicit = gradients.per_example_clipped_gradient(0.5, strategy="vmap")(
        loss_fn, params, batch, None
    )
    for a, b in zip(jax.tree.leaves(auto[1]), jax.tree.leaves(explicit[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5)
