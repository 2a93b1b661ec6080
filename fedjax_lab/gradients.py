"""Gradient hooks of local training: how a step's gradient is computed.

A hook is ``gradient(loss_fn, params, batch, key) -> (loss, grads)`` where ``loss_fn`` is
``(params, batch) -> scalar`` (the mean loss over the batch's leading example axis) and
``key`` is the step's PRNG key. :func:`fedjax_lab.local.local_train` calls it once per step
and hands ``grads`` to the optimizer.

* :func:`batch_gradient` (the default): ``grad`` of the batch-mean loss.
* :func:`per_example_clipped_gradient`: DP-SGD's gradient. Each example's gradient is
  clipped to L2 norm ``C`` over the whole pytree before averaging,

  .. math::

    g = \\frac{1}{B} \\sum_{b} g_b \\min\\Big(1, \\frac{C}{\\lVert g_b \\rVert_2}\\Big),
    \\qquad g_b = \\nabla \\ell(y; x_b).

  With ``noise_multiplier=sigma`` it is DP-SGD's noisy gradient,
  ``g + N(0, (sigma C / B)^2 I)`` drawn from the step's key: the sum of clipped gradients
  has sensitivity ``C`` (one example added or removed), and gets noise of std ``sigma C``.
* No gradient at all: pass ``gradient=None`` to ``local_train``. The model is then never
  differentiated; the optimizer receives zeros and must build its own update from the
  ``loss_fn`` and ``key`` extra arguments (zeroth-order estimators, black-box models).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

GradientFn = Callable[[Callable[[Any, Any], jax.Array], Any, Any, jax.Array], tuple[Any, Any]]


def batch_gradient(loss_fn, params, batch, key):
    """The loss of the batch and its gradient with respect to ``params``."""
    del key
    return jax.value_and_grad(loss_fn)(params, batch)


def _global_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def per_example_losses(loss_fn, params, batch) -> jax.Array:
    """``[B]``, the loss of each example of ``batch`` (each evaluated as a batch of one)."""
    return jax.vmap(lambda example: loss_fn(params, jax.tree.map(lambda x: x[None], example)))(
        batch
    )


def per_example_clipped_gradient(clip_norm: float, noise_multiplier: float = 0.0) -> GradientFn:
    """The mean of per-example gradients, each clipped to L2 norm ``clip_norm``, plus noise.

    Args:
      clip_norm: ``C > 0``, the bound on every example's contribution.
      noise_multiplier: ``sigma >= 0``; the mean gets ``N(0, (sigma C / B)^2)`` per
        coordinate, from the step's key (0: no noise).

    Returns:
      A gradient hook. The loss it returns is the batch mean; every leaf of the batch must
      carry the example axis first (each example is evaluated as a batch of one).
    """
    if not clip_norm > 0:
        raise ValueError(f"Expected clip_norm > 0, got {clip_norm!r}.")
    if not noise_multiplier >= 0:
        raise ValueError(f"Expected a noise multiplier sigma >= 0, got {noise_multiplier!r}.")

    def gradient(loss_fn, params, batch, key):
        def one(example):
            single = jax.tree.map(lambda x: x[None], example)
            return jax.value_and_grad(loss_fn)(params, single)

        losses, grads = jax.vmap(one)(batch)
        norms = jax.vmap(_global_norm)(grads)
        scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-12))
        clipped = jax.tree.map(
            lambda g: jnp.mean(g * scale.reshape((-1,) + (1,) * (g.ndim - 1)), axis=0), grads
        )
        if noise_multiplier:
            size = jax.tree.leaves(batch)[0].shape[0]
            leaves, tree = jax.tree.flatten(clipped)
            keys = jax.random.split(key, len(leaves))
            std = noise_multiplier * clip_norm / size
            clipped = jax.tree.unflatten(
                tree,
                [g + std * jax.random.normal(k, g.shape, g.dtype) for g, k in zip(leaves, keys)],
            )
        return jnp.mean(losses), clipped

    return gradient
