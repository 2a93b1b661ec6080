"""Sharpness-aware minimization (SAM) as a composable optax transformation.

Given the gradient ``g = grad L(y)`` of the loss at the current parameters ``y``, SAM
ascends to the worst point of a small ball around ``y`` and returns the gradient there:

.. math::

  e = \\rho \\, g / (\\lVert g \\rVert_2 + \\epsilon), \\qquad g' = \\nabla L(y + e),

with the global L2 norm over the whole pytree (or over the masked leaves only). The
adaptive variant (ASAM) scales the ball by the parameter magnitudes:

.. math::

  e = \\rho \\, |y|^2 g / (\\lVert |y| \\, g \\rVert_2 + \\epsilon).

The transformation only rewrites the gradient; the base optimizer that follows it in an
``optax.chain`` consumes ``g'``, and the perturbation never touches the stored parameters.
The loss reaches the transformation as the keyword-only extra argument ``loss_fn``: a
function of the parameters alone (the batch closed over), so ``g'`` uses the same batch.

Example::

  opt = optax.chain(sam(rho=0.05), optax.sgd(0.1))
  state = opt.init(params)
  loss_fn = lambda p: loss(p, batch)
  updates, state = opt.update(jax.grad(loss_fn)(params), state, params, loss_fn=loss_fn)

References:
  Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization",
  ICLR 2021. Kwon et al., "ASAM: Adaptive Sharpness-Aware Minimization", ICML 2021.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

MaskOrFn = Any | Callable[[Any], Any]


def _resolve_mask(mask: MaskOrFn | None, params: Any) -> Any:
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    mask = mask(params) if callable(mask) else mask
    if jax.tree.structure(mask) != jax.tree.structure(params):
        raise ValueError(
            "The SAM mask must have the structure of the parameters, got "
            f"{jax.tree.structure(mask)} for parameters {jax.tree.structure(params)}."
        )
    for leaf in jax.tree.leaves(mask):
        if not isinstance(leaf, bool):
            raise ValueError(
                f"The SAM mask must hold Python booleans (a static choice of leaves), got {leaf!r}."
            )
    return mask


def _global_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def sam_perturbation(
    grads: Any,
    params: Any,
    rho: float,
    *,
    adaptive: bool = False,
    mask: MaskOrFn | None = None,
    eps: float = 1e-12,
) -> Any:
    """The SAM ascent step ``e`` for gradients ``grads`` at ``params`` (zero off the mask)."""
    keep = _resolve_mask(mask, params)
    grads = jax.tree.map(lambda g, k: g if k else jnp.zeros_like(g), grads, keep)
    if adaptive:
        scaled = jax.tree.map(lambda g, y: jnp.abs(y) * g, grads, params)
        norm = _global_norm(scaled)
        return jax.tree.map(lambda g, y: rho * jnp.square(y) * g / (norm + eps), grads, params)
    norm = _global_norm(grads)
    return jax.tree.map(lambda g: rho * g / (norm + eps), grads)


def sam(
    rho: float,
    *,
    adaptive: bool = False,
    mask: MaskOrFn | None = None,
    eps: float = 1e-12,
) -> optax.GradientTransformationExtraArgs:
    """SAM gradient rewriting: ``g -> grad L(y + e(g))``.

    Args:
      rho: radius of the perturbation ball, ``>= 0`` (``0`` returns ``grad L(y)`` again).
      adaptive: use ASAM's parameter-scaled ball instead of the plain L2 ball.
      mask: optional pytree of booleans matching the parameters (or a function of the
        parameters returning one). Only ``True`` leaves are perturbed, and the norm is
        taken over them only; the returned gradient still covers every leaf.
      eps: added to the norm to avoid division by zero.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` requires ``params`` and
      the keyword argument ``loss_fn`` (parameters -> scalar loss on the current batch).
    """
    if not rho >= 0:
        raise ValueError(f"Expected SAM radius rho >= 0, got {rho!r}.")
    if not eps > 0:
        raise ValueError(f"Expected eps > 0, got {eps!r}.")

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, loss_fn, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("sam() needs the current params in update(...).")
        e = sam_perturbation(updates, params, rho, adaptive=adaptive, mask=mask, eps=eps)
        perturbed = jax.tree.map(lambda y, d: y + d.astype(y.dtype), params, e)
        return jax.grad(loss_fn)(perturbed), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sam_sgd(
    learning_rate: float,
    rho: float,
    *,
    momentum: float | None = None,
    adaptive: bool = False,
    weight_decay: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
    """The local optimizer of the SAM family: ``chain(sam(rho), sgd(learning_rate))``, with
    ``add_decayed_weights(weight_decay)`` between them when it is positive (the decay is
    added to the SAM gradient, so it is not perturbed)."""
    if not weight_decay >= 0:
        raise ValueError(f"Expected weight_decay >= 0, got {weight_decay!r}.")
    decay = [optax.add_decayed_weights(weight_decay)] if weight_decay > 0 else []
    return optax.chain(
        sam(rho, adaptive=adaptive), *decay, optax.sgd(learning_rate, momentum=momentum)
    )
