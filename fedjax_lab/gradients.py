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

from fedjax_lab import ghost_clipping

GradientFn = Callable[[Callable[[Any, Any], jax.Array], Any, Any, jax.Array], tuple[Any, Any]]


def batch_gradient(loss_fn, params, batch, key):
    """The loss of the batch and its gradient with respect to ``params``."""
    del key
    return jax.value_and_grad(loss_fn)(params, batch)


def per_example_losses(loss_fn, params, batch) -> jax.Array:
    """``[B]``, the loss of each example of ``batch`` (each evaluated as a batch of one)."""
    return jax.vmap(lambda example: loss_fn(params, jax.tree.map(lambda x: x[None], example)))(
        batch
    )


PER_EXAMPLE_STRATEGIES = ("auto", "ghost", "vmap", "map")


def per_example_clipped_gradient(
    clip_norm: float, noise_multiplier: float = 0.0, *, strategy: str = "auto"
) -> GradientFn:
    """The mean of per-example gradients, each clipped to L2 norm ``clip_norm``, plus noise.

    Computed in two passes: the per-example gradient norms ``||g_b||`` first, then one
    backward pass of the reweighted loss ``(1/B) sum_b s_b l_b`` with the clip factors
    ``s_b = min(1, C / ||g_b||)`` held constant, whose gradient is the clipped mean by
    linearity. The per-example gradients are never averaged as such (XLA:CPU turns
    ``mean(s_b g_b)`` over a convolution's per-example weight gradients into a very slow
    fusion: 17 s instead of 0.2 s for the EMNIST CNN).

    For a flax model of dense and 2-D convolution layers the whole computation is one pass
    instead (:mod:`fedjax_lab.ghost_clipping`): one batched forward pass and one backward
    pass to the layers' outputs give the norms and the clipped mean, with no per-example
    gradient. For other models the norms come from per-example gradients reduced to their
    norms at once, then the reweighted backward pass.

    Args:
      clip_norm: ``C > 0``, the bound on every example's contribution.
      noise_multiplier: ``sigma >= 0``; the mean gets ``N(0, (sigma C / B)^2)`` per
        coordinate, from the step's key (0: no noise).
      strategy: how the per-example norms are computed: ``"ghost"`` (from the layers'
        inputs and output gradients, one pass; an error when the model has other
        parameters),
        ``"vmap"`` (per-example gradients of all examples at once), ``"map"`` (one example
        after another, ``lax.map``: the faster on XLA:CPU for a model with convolutions,
        where a vmapped convolution gradient becomes a slow grouped convolution) or
        ``"auto"`` (``"ghost"`` where it applies; otherwise ``"map"`` on CPU for a model
        with convolution kernels, parameters of three or more dimensions, and ``"vmap"``;
        decided when the step is traced).

    Returns:
      A gradient hook. The loss it returns is the batch mean; every leaf of the batch must
      carry the example axis first (each example is evaluated as a batch of one).
    """
    if not clip_norm > 0:
        raise ValueError(f"Expected clip_norm > 0, got {clip_norm!r}.")
    if not noise_multiplier >= 0:
        raise ValueError(f"Expected a noise multiplier sigma >= 0, got {noise_multiplier!r}.")
    if strategy not in PER_EXAMPLE_STRATEGIES:
        raise ValueError(
            f"Unknown per-example strategy {strategy!r}; expected one of {PER_EXAMPLE_STRATEGIES}."
        )

    def gradient(loss_fn, params, batch, key):
        def squared_norm(example):
            single = jax.tree.map(lambda x: x[None], example)
            g = jax.grad(loss_fn)(params, single)
            return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(g))

        how, ghost = strategy, None
        if how in ("auto", "ghost"):
            ghost = ghost_clipping.clipped_mean_gradient(loss_fn, params, batch, clip_norm)
            if ghost is None and how == "ghost":
                raise ValueError(
                    "strategy='ghost' needs a flax model of nn.Dense and 2-D convolution "
                    "layers, each called once, holding every parameter; use 'auto', 'vmap' "
                    "or 'map' for this model."
                )
        if ghost is not None:
            loss, clipped = ghost
        else:
            if how == "auto":
                convolutional = any(jnp.ndim(x) >= 3 for x in jax.tree.leaves(params))
                how = "map" if convolutional and jax.default_backend() == "cpu" else "vmap"
            squared = (
                jax.vmap(squared_norm)(batch) if how == "vmap" else jax.lax.map(squared_norm, batch)
            )
            scale = jnp.minimum(1.0, clip_norm / jnp.maximum(jnp.sqrt(squared), 1e-12))
            scale = jax.lax.stop_gradient(scale)

            def reweighted(p):
                losses = per_example_losses(loss_fn, p, batch)
                return jnp.mean(scale * losses), losses

            (_, losses), clipped = jax.value_and_grad(reweighted, has_aux=True)(params)
            loss = jnp.mean(losses)
        if noise_multiplier:
            size = jax.tree.leaves(batch)[0].shape[0]
            leaves, tree = jax.tree.flatten(clipped)
            keys = jax.random.split(key, len(leaves))
            std = noise_multiplier * clip_norm / size
            clipped = jax.tree.unflatten(
                tree,
                [g + std * jax.random.normal(k, g.shape, g.dtype) for g, k in zip(leaves, keys)],
            )
        return loss, clipped

    return gradient
