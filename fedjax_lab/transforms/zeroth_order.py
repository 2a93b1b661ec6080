"""Zeroth-order gradient estimators as optax transformations: gradients from loss values.

The loss reaches the transformation as the extra argument ``loss_fn`` (a function of the
parameters alone, the batch closed over) and a PRNG key as ``key``, as
:func:`fedjax_lab.local.local_train` passes them; the incoming gradient is ignored (train
with ``gradient=None``, so the model is never differentiated). With ``y`` the parameters
flattened to ``d`` coordinates and ``q`` directions ``u_1 .. u_q``:

.. math::

  \\text{two-point: } g = \\frac{1}{q} \\sum_k
      \\frac{L(y + \\mu u_k) - L(y - \\mu u_k)}{2 \\mu} u_k, \\qquad
  \\text{forward: } g = \\frac{1}{q} \\sum_k \\frac{L(y + \\mu u_k) - L(y)}{\\mu} u_k.

The directions are standard Gaussian (``"gaussian"``), uniform on the sphere of radius
``sqrt(d)`` (``"sphere"``) or uniform signs ``+-1`` (``"rademacher"``), so ``E[u u^T] = I``
in every case. The estimates are unbiased for the gradient of a smoothed loss:
``L_mu(y) = E_u L(y + mu u)`` for Gaussian directions, the mean of ``L`` over the ball of
radius ``mu sqrt(d)`` around ``y`` for sphere directions. Rademacher directions are the
cheap ones: one random bit per coordinate instead of a 32-bit word, which matters on a CPU,
where drawing ``d`` normals can cost more than a forward pass of a small model. On a quadratic the two-point estimate is
``(1/q) sum_k u_k u_k^T grad L(y)``: unbiased for ``grad L`` itself, with
``E ||g - grad L||^2 = (d + 1) ||grad L||^2 / q`` (Gaussian) or ``(d - 1) ||grad L||^2 / q``
(sphere, Rademacher).

Direction ``k`` of a step is ``direction(key, k, d)``, a function of the step's key and the
index alone: a step is replayed from its key (FedKSeed's seeds). The ``q`` loss
evaluations run at once (``vmap`` over the directions), and a step costs ``2q`` forward
passes (two-point) or ``q + 1`` (forward), plus the one that reports the step's loss.

:func:`spsa` is simultaneous-perturbation SA (Spall): Rademacher signs times magnitudes
uniform in ``[0.5, 1]`` (BlackVIP's perturbation), elementwise division by the
perturbation, and a radius that decays as ``c_k = c / (k + 1)^gamma``. :func:`spsa_gc` is
the complete BlackVIP-style optimizer with gain ``a_k = a / (k + 1 + offset)^alpha`` and
its momentum-style correction (SPSA-GC): the gradient is estimated at the look-ahead point
``y + beta m`` and ``m <- beta m - a_k g``, ``y <- y + m``.

:func:`kseed_sgd` is FedKSeed's local optimizer: a pool of ``K`` seeds is fixed at the
start, every step draws one seed ``j`` from the pool, regenerates its direction
``z_j = kseed_direction(pool, j)``, makes the two-point estimate
``g = (L(y + eps z_j) - L(y - eps z_j)) / (2 eps)`` and steps ``y <- y - lr g z_j``. Its
state records every step's pair ``(j, -lr g)``, and :func:`kseed_replay` turns pairs back
into the update they make, so a model is rebuilt from its pairs and the pool alone.

Example::

  opt = optax.chain(zo_gradient(mu=1e-3, num_directions=8), optax.sgd(0.05))
  result = local.local_train(opt, loss_fn, params, batches, key, gradient=None)

References:
  Nesterov and Spokoiny, "Random Gradient-Free Minimization of Convex Functions", 2017.
  Spall, "Multivariate Stochastic Approximation Using a Simultaneous Perturbation
  Gradient Approximation", IEEE TAC 1992.
  Oh et al., "BlackVIP: Black-Box Visual Prompting for Robust Transfer Learning", CVPR 2023.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

__all__ = [
    "DISTRIBUTIONS",
    "ESTIMATORS",
    "KSeedState",
    "SpsaState",
    "direction",
    "kseed_direction",
    "kseed_replay",
    "kseed_sgd",
    "spsa",
    "spsa_gc",
    "zo_gradient",
]

ESTIMATORS = ("two_point", "forward")
DISTRIBUTIONS = ("gaussian", "sphere", "rademacher")


def direction(key: jax.Array, index: int | jax.Array, size: int, distribution: str = "gaussian"):
    """Direction ``index`` of the step with ``key``: ``[size]`` float32, ``E[u u^T] = I``.

    Args:
      key: the step's PRNG key (``local_train`` passes one per step).
      index: which direction (``0 .. q-1``); may be traced.
      size: ``d``, the number of coordinates.
      distribution: ``"gaussian"`` (standard normal), ``"sphere"`` (uniform on the sphere
        of radius ``sqrt(d)``) or ``"rademacher"`` (independent signs, from the bits of
        ``ceil(d / 32)`` random words).
    """
    key = jax.random.fold_in(key, index)
    if distribution == "rademacher":
        words = jax.random.bits(key, (-(-size // 32),), jnp.uint32)
        bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
        return bits.reshape(-1)[:size].astype(jnp.float32) * 2.0 - 1.0
    u = jax.random.normal(key, (size,), jnp.float32)
    if distribution == "sphere":
        u = u * (jnp.sqrt(jnp.float32(size)) / jnp.linalg.norm(u))
    return u


def _check(mu: float, num_directions: int, name: str = "mu") -> None:
    if not mu > 0:
        raise ValueError(f"Expected a smoothing radius {name} > 0, got {mu!r}.")
    if (
        isinstance(num_directions, bool)
        or not isinstance(num_directions, int)
        or num_directions < 1
    ):
        raise ValueError(f"Expected num_directions to be an integer >= 1, got {num_directions!r}.")


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"Unknown ZO estimator {estimator!r}; expected one of {ESTIMATORS}.")


def _check_distribution(distribution: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"Unknown ZO direction distribution {distribution!r}; expected one of {DISTRIBUTIONS}."
        )


def _loss_and_key(extra: dict[str, Any], params: Any, who: str) -> tuple[Callable, jax.Array]:
    if params is None:
        raise ValueError(f"{who} needs the parameters: call update(updates, state, params, ...).")
    for needed in ("loss_fn", "key"):
        if extra.get(needed) is None:
            raise ValueError(
                f"{who} estimates the gradient from loss values: pass {needed}= to update "
                "(local.local_train passes loss_fn and key)."
            )
    return extra["loss_fn"], extra["key"]


def _values(loss_fn: Callable, unravel: Callable, points: jax.Array) -> jax.Array:
    """The loss at every row of ``points`` ``[n, d]``, all at once."""
    return jax.vmap(lambda p: loss_fn(unravel(p)))(points)


def zo_gradient(
    mu: float,
    num_directions: int = 1,
    *,
    estimator: str = "two_point",
    distribution: str = "gaussian",
) -> optax.GradientTransformationExtraArgs:
    """The two-point or forward-difference estimate of the gradient (module docstring).

    Args:
      mu: the smoothing radius ``mu > 0``.
      num_directions: ``q``, directions averaged per step.
      estimator: ``"two_point"`` or ``"forward"``.
      distribution: ``"gaussian"``, ``"sphere"`` or ``"rademacher"``.

    Returns:
      A transformation whose ``update(updates, state, params, *, loss_fn, key)`` returns the
      estimate, shaped like ``params`` (``updates`` is ignored).
    """
    _check(mu, num_directions)
    _check_estimator(estimator)
    _check_distribution(distribution)

    def update(updates, state, params=None, **extra):
        del updates
        loss_fn, key = _loss_and_key(extra, params, "zo_gradient")
        flat, unravel = ravel_pytree(params)
        size = flat.shape[0]
        u = jax.vmap(lambda k: direction(key, k, size, distribution))(jnp.arange(num_directions))
        if estimator == "two_point":
            values = _values(loss_fn, unravel, jnp.concatenate([flat + mu * u, flat - mu * u]))
            slopes = (values[:num_directions] - values[num_directions:]) / (2 * mu)
        else:
            values = _values(loss_fn, unravel, jnp.concatenate([flat + mu * u, flat[None]]))
            slopes = (values[:num_directions] - values[num_directions]) / mu
        estimate = jnp.einsum("k,kd->d", slopes.astype(jnp.float32), u) / num_directions
        return unravel(estimate.astype(flat.dtype)), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


class SpsaState(NamedTuple):
    """Steps taken (``k``) and, for :func:`spsa_gc`, the momentum ``m``."""

    count: jax.Array
    momentum: Any = ()


def _spsa_estimate(loss_fn, key, flat, unravel, radius, num_directions):
    """``(1/q) sum_k (L(y + c D_k) - L(y - c D_k)) / (2c) / D_k`` with BlackVIP's ``D``."""

    def perturbation(k):
        signs, sizes = jax.random.split(jax.random.fold_in(key, k))
        sign = jax.random.rademacher(signs, flat.shape, jnp.float32)
        return sign * jax.random.uniform(sizes, flat.shape, jnp.float32, 0.5, 1.0)

    d = jax.vmap(perturbation)(jnp.arange(num_directions))
    values = _values(loss_fn, unravel, jnp.concatenate([flat + radius * d, flat - radius * d]))
    slopes = (values[:num_directions] - values[num_directions:]) / (2 * radius)
    return jnp.mean(slopes[:, None] / d, axis=0)


def spsa(
    c: float, num_directions: int = 1, *, gamma: float = 0.101
) -> optax.GradientTransformationExtraArgs:
    """SPSA's gradient estimate with radius ``c_k = c / (k + 1)^gamma`` at step ``k``.

    Chain it with any optimizer (``optax.chain(spsa(c), optax.sgd(a))``); :func:`spsa_gc`
    adds the gain schedule and the momentum-style correction.
    """
    _check(c, num_directions, "c")
    if not gamma >= 0:
        raise ValueError(f"Expected gamma >= 0, got {gamma!r}.")

    def update(updates, state, params=None, **extra):
        del updates
        loss_fn, key = _loss_and_key(extra, params, "spsa")
        flat, unravel = ravel_pytree(params)
        radius = c / (state.count.astype(jnp.float32) + 1.0) ** gamma
        estimate = _spsa_estimate(loss_fn, key, flat, unravel, radius, num_directions)
        return unravel(estimate.astype(flat.dtype)), SpsaState(state.count + 1)

    return optax.GradientTransformationExtraArgs(
        lambda params: SpsaState(jnp.zeros((), jnp.int32)), update
    )


def spsa_gc(
    a: float,
    c: float,
    *,
    num_directions: int = 1,
    alpha: float = 0.602,
    gamma: float = 0.101,
    offset: float = 0.0,
    beta: float = 0.9,
) -> optax.GradientTransformationExtraArgs:
    """SPSA with gradient correction (BlackVIP's SPSA-GC): a complete optimizer.

    At step ``k``: ``a_k = a / (k + 1 + offset)^alpha``, ``c_k = c / (k + 1)^gamma``,
    ``g = SPSA(y + beta m)`` with radius ``c_k``, ``m <- beta m - a_k g`` and the update is
    ``m`` (``y <- y + m``). Spall's usual exponents are the defaults.
    """
    _check(c, num_directions, "c")
    if not a > 0:
        raise ValueError(f"Expected a gain a > 0, got {a!r}.")
    if not 0 <= beta < 1:
        raise ValueError(f"Expected beta in [0, 1), got {beta!r}.")

    def init(params):
        flat, _ = ravel_pytree(params)
        return SpsaState(jnp.zeros((), jnp.int32), jnp.zeros_like(flat))

    def update(updates, state, params=None, **extra):
        del updates
        loss_fn, key = _loss_and_key(extra, params, "spsa_gc")
        flat, unravel = ravel_pytree(params)
        k = state.count.astype(jnp.float32)
        gain = a / (k + 1.0 + offset) ** alpha
        radius = c / (k + 1.0) ** gamma
        ahead = flat + beta * state.momentum
        estimate = _spsa_estimate(loss_fn, key, ahead, unravel, radius, num_directions)
        momentum = beta * state.momentum - gain * estimate
        return unravel(momentum.astype(flat.dtype)), SpsaState(state.count + 1, momentum)

    return optax.GradientTransformationExtraArgs(init, update)


class KSeedState(NamedTuple):
    """Steps taken, and each step's pair: the pool seed it used and its update coefficient
    ``-lr g`` (slots of steps not taken hold seed 0 and coefficient 0)."""

    count: jax.Array
    seeds: jax.Array
    coefficients: jax.Array


def kseed_direction(
    pool_seed: int, seed: int | jax.Array, size: int, distribution: str = "gaussian"
) -> jax.Array:
    """The direction of seed ``seed`` (``0 .. K-1``) of the pool made from ``pool_seed``."""
    return direction(jax.random.key(pool_seed), seed, size, distribution)


def kseed_replay(
    pool_seed: int,
    seeds: jax.Array,
    coefficients: jax.Array,
    like: Any,
    distribution: str = "gaussian",
) -> Any:
    """``sum_n coefficients[n] * z_{seeds[n]}``, shaped like the pytree ``like``.

    Every rebuild of the same pairs computes the same sum, in the same order, so it is
    bitwise reproducible (the directions are regenerated, never sent).
    """
    flat, unravel = ravel_pytree(like)
    seeds, coefficients = jnp.ravel(seeds), jnp.ravel(coefficients).astype(jnp.float32)
    z = jax.vmap(lambda j: kseed_direction(pool_seed, j, flat.shape[0], distribution))(seeds)
    return unravel(jnp.einsum("n,nd->d", coefficients, z).astype(flat.dtype))


def kseed_sgd(
    learning_rate: float,
    *,
    num_seeds: int,
    steps: int,
    eps: float = 5e-4,
    pool_seed: int = 0,
    distribution: str = "gaussian",
) -> optax.GradientTransformationExtraArgs:
    """FedKSeed's local zeroth-order SGD over a pool of ``num_seeds`` seeds (module docstring).

    Args:
      learning_rate: the step size ``lr > 0``.
      num_seeds: ``K``, the size of the seed pool.
      steps: how many steps a state records (at least the steps a client runs per round;
        the state is reset every round).
      eps: the two-point radius.
      pool_seed: the integer the pool is made from; every client and the server share it.
      distribution: of the directions (:func:`direction`).

    Returns:
      A complete optimizer (chain nothing after it): ``update`` returns ``-lr g z_j``.
    """
    _check(eps, num_seeds, "eps")
    if not learning_rate > 0:
        raise ValueError(f"Expected a learning rate > 0, got {learning_rate!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"Expected steps to be an integer >= 1, got {steps!r}.")
    _check_distribution(distribution)

    def init(params):
        del params
        return KSeedState(
            jnp.zeros((), jnp.int32), jnp.zeros((steps,), jnp.int32), jnp.zeros((steps,))
        )

    def update(updates, state, params=None, **extra):
        del updates
        loss_fn, key = _loss_and_key(extra, params, "kseed_sgd")
        flat, unravel = ravel_pytree(params)
        seed = jax.random.randint(key, (), 0, num_seeds, jnp.int32)
        z = kseed_direction(pool_seed, seed, flat.shape[0], distribution)
        values = _values(loss_fn, unravel, jnp.stack([flat + eps * z, flat - eps * z]))
        coefficient = -learning_rate * (values[0] - values[1]).astype(jnp.float32) / (2 * eps)
        new_state = KSeedState(
            state.count + 1,
            state.seeds.at[state.count].set(seed),
            state.coefficients.at[state.count].set(coefficient),
        )
        return unravel((coefficient * z).astype(flat.dtype)), new_state

    return optax.GradientTransformationExtraArgs(init, update)
