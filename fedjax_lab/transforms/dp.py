"""Client-level differential privacy of an update, as composable optax transformations.

Applied to a client's update ``delta_i`` before it leaves the client (the update transform
of :func:`fedjax_lab.algorithms.client_update`), they make the DP-FedAvg family:

* :func:`clip`: ``delta <- delta * min(1, C / ||delta||_2)`` over the whole update
  (``optax.clip_by_global_norm``), or each tensor to norm ``C`` on its own
  (``per_tensor=True``, the variant of the released DP-FedSAM code: the whole update's norm
  is then bounded by ``C * sqrt(number of tensors)``, and the sensitivity with it);
* :func:`gaussian_noise`: ``delta <- delta + N(0, s^2 I)`` with the client's own key,
  ``s = sigma * C / sqrt(m)`` for an expected cohort of ``m`` clients, so that the mean
  over the cohort carries ``N(0, (sigma C / m)^2)``, the noise a central Gaussian mechanism
  adds to the sum (``sigma C``) divided by ``m``; a given ``std`` is also accepted;
* :func:`top_k`: keeps the ``k = ceil(p d)`` coordinates of largest magnitude over the
  whole update (``d`` coordinates) and zeroes the rest. Followed by
  ``gaussian_noise(..., on_support=True)``, noise goes to the kept coordinates only.

They chain: ``optax.chain(top_k(p), clip(C), gaussian_noise(sigma, clip_norm=C,
expected_clients=m, on_support=True))`` sparsifies first, then clips, then noises (the
order ALGORITHMS.md leaves open; sparsify-then-clip keeps the bound ``C`` exact).

References:
  McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018.
  Shi et al., "Make Landscape Flatter in Differentially Private Federated Learning",
  CVPR 2023 (DP-FedSAM, top_k).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree


def _check_clip_norm(clip_norm: float) -> float:
    if not clip_norm > 0:
        raise ValueError(f"Expected a clip norm C > 0, got {clip_norm!r}.")
    return float(clip_norm)


def clip(clip_norm: float, *, per_tensor: bool = False) -> optax.GradientTransformation:
    """Clips the update to L2 norm ``clip_norm`` (whole update, or each tensor)."""
    clip_norm = _check_clip_norm(clip_norm)
    if not per_tensor:
        return optax.clip_by_global_norm(clip_norm)

    def update_fn(updates, state, params=None):
        del params

        def one(u):
            norm = jnp.sqrt(jnp.sum(jnp.square(u)))
            return u * jnp.minimum(1.0, clip_norm / jnp.maximum(norm, 1e-12)).astype(u.dtype)

        return jax.tree.map(one, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def noise_std(noise_multiplier: float, clip_norm: float, expected_clients: int) -> float:
    """The per-client std ``sigma * C / sqrt(m)`` (the cohort mean then has ``sigma C / m``)."""
    if not noise_multiplier >= 0:
        raise ValueError(f"Expected a noise multiplier sigma >= 0, got {noise_multiplier!r}.")
    clip_norm = _check_clip_norm(clip_norm)
    if isinstance(expected_clients, bool) or not expected_clients > 0:
        raise ValueError(f"Expected an expected cohort size m > 0, got {expected_clients!r}.")
    return float(noise_multiplier) * clip_norm / math.sqrt(expected_clients)


def gaussian_noise(
    noise_multiplier: float | None = None,
    *,
    clip_norm: float | None = None,
    expected_clients: int | None = None,
    std: float | None = None,
    on_support: bool = False,
    per_tensor_clip: bool = False,
    split_over_cohort: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """Adds Gaussian noise drawn from the keyword argument ``key`` (required).

    Args:
      noise_multiplier: sigma; with ``clip_norm`` and ``expected_clients`` it gives the
        std ``sigma * C / sqrt(m)`` (:func:`noise_std`).
      clip_norm, expected_clients: C and m.
      std: the std itself, instead of the three above.
      on_support: add noise only where the update is nonzero (after :func:`top_k`).
      per_tensor_clip: the update was clipped per tensor (``clip(C, per_tensor=True)``),
        so its sensitivity is ``C sqrt(L)`` for ``L`` tensors: the std is multiplied by
        ``sqrt(L)`` and the noise multiplier, hence epsilon, stays what it says. (The
        released DP-FedSAM code does not scale it, and so adds less noise than its
        accounting assumes.)
      split_over_cohort: split the sum's noise ``sigma C`` over the clients that take part
        this round, ``|S|`` from the keyword argument ``cohort_size`` (required then):
        std ``sigma C / sqrt(|S|)`` each, so the sum carries exactly ``N(0, (sigma C)^2)``
        whatever the size of a Poisson cohort (with ``expected_clients``, a cohort smaller
        than expected would carry less noise than the accounting assumes). Takes
        ``noise_multiplier`` and ``clip_norm``, not ``expected_clients``. The guarantee is
        then that of the sum (secure aggregation or a trusted server); one message alone
        carries less noise.

    Returns:
      A transformation whose ``update`` needs ``key=``: each client passes its own, so
      clients draw independent noise.
    """
    if split_over_cohort:
        if noise_multiplier is None or clip_norm is None or expected_clients is not None:
            raise ValueError(
                "gaussian_noise(split_over_cohort=True) needs noise_multiplier and clip_norm= "
                "(the cohort size comes with each update), not expected_clients= or std=."
            )
        std = noise_std(noise_multiplier, clip_norm, 1)
    elif std is None:
        if None in (noise_multiplier, clip_norm, expected_clients):
            raise ValueError(
                "gaussian_noise needs either std= or all of noise_multiplier, clip_norm= and "
                "expected_clients=."
            )
        std = noise_std(noise_multiplier, clip_norm, expected_clients)
    elif noise_multiplier is not None or clip_norm is not None or expected_clients is not None:
        raise ValueError("Pass either std= or noise_multiplier with clip_norm=, not both.")
    if not std >= 0:
        raise ValueError(f"Expected a noise std >= 0, got {std!r}.")

    def update_fn(updates, state, params=None, *, key, **extra_args):
        del params
        leaves, tree = jax.tree.flatten(updates)
        keys = jax.random.split(key, len(leaves))
        scale = std * math.sqrt(len(leaves)) if per_tensor_clip else std
        if split_over_cohort:
            cohort = jnp.maximum(extra_args["cohort_size"], 1).astype(jnp.float32)
            scale = scale / jnp.sqrt(cohort)
        noisy = []
        for u, k in zip(leaves, keys):
            noise = scale * jax.random.normal(k, u.shape, u.dtype)
            noisy.append(u + (jnp.where(u != 0, noise, 0) if on_support else noise))
        return jax.tree.unflatten(tree, noisy), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def empty_cohort_noise(std: float) -> optax.GradientTransformationExtraArgs:
    """Server side: adds ``N(0, std^2)`` to the update when no client took part.

    With Poisson sampling a round may have no clients; the sampled Gaussian mechanism still
    releases noise then (``sigma C / m`` on the mean), which the clients cannot add. Chained
    before the server optimizer, it needs the keyword arguments ``cohort_size`` and ``key``.
    """
    if not std >= 0:
        raise ValueError(f"Expected a noise std >= 0, got {std!r}.")

    def update_fn(updates, state, params=None, *, key, cohort_size, **extra_args):
        del params, extra_args
        leaves, tree = jax.tree.flatten(updates)
        keys = jax.random.split(key, len(leaves))
        empty = cohort_size == 0
        noisy = [
            u + jnp.where(empty, std, 0.0).astype(u.dtype) * jax.random.normal(k, u.shape, u.dtype)
            for u, k in zip(leaves, keys)
        ]
        return jax.tree.unflatten(tree, noisy), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def top_k(fraction: float) -> optax.GradientTransformation:
    """Keeps the ``ceil(fraction * d)`` largest-magnitude coordinates of the whole update.

    Args:
      fraction: p in (0, 1]; ``1`` keeps everything.
    """
    if isinstance(fraction, bool) or not 0 < fraction <= 1:
        raise ValueError(f"Expected a top-k fraction p in (0, 1], got {fraction!r}.")

    def update_fn(updates, state, params=None):
        del params
        flat, unravel = ravel_pytree(updates)
        k = max(1, math.ceil(fraction * flat.size))
        if k >= flat.size:
            return updates, state
        _, kept = jax.lax.top_k(jnp.abs(flat), k)
        mask = jnp.zeros(flat.shape, bool).at[kept].set(True)
        return unravel(jnp.where(mask, flat, 0)), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def kept_coordinates(fraction: float, num_coordinates: int) -> int:
    """``k = ceil(p d)``, the coordinates :func:`top_k` keeps of a ``d``-coordinate update."""
    return min(num_coordinates, max(1, math.ceil(fraction * num_coordinates)))
