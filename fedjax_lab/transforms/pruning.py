"""Magnitude (lottery-ticket) pruning as optax transformations, for Fed-LTP.

Two pieces, one on each side:

* :func:`apply_mask` (client): multiplies the updates by the keyword argument ``mask``, the
  server's broadcast mask, so pruned weights stay exactly zero through sparse-to-sparse
  training (placed last in the local chain, after momentum or weight decay);
* :func:`magnitude_pruning` (server, after the server optimizer in a chain): the new model
  ``x' = (x + u) * M`` keeps the current mask ``M``; on the schedule's pruning rounds the
  prunable weights of smallest magnitude are cut, over all prunable tensors together
  (global magnitude pruning), to the schedule's next sparsity. The mask lives in the
  transformation's state (:class:`PruningState`).

The schedule (:class:`PruningSchedule`, ALGORITHMS.md leaves it open) is iterative magnitude
pruning: every ``every`` rounds a fraction ``rate`` of the remaining prunable weights is
cut, so after ``k`` accepted steps the sparsity is ``min(s, 1 - (1 - rate)^k)``, until the
target ``s``. Prunable tensors are those with two or more dimensions (kernels); biases and
norm scales stay dense.

Validation (:class:`LaplaceValidation`): a pruning step is kept only if it does not raise
the validation loss by more than a tolerance, judged on a noisy score. The score is the
mean change of per-example losses, each clipped to ``[0, B]``, over a fixed number ``n`` of
validation examples; one example moves it by at most ``B / n``, so releasing it with
``Laplace(B / (n eps_v))`` noise is ``eps_v``-DP, hence ``eps_v^2 / 2``-zCDP. A rejected
step keeps the old mask and is retried at the next pruning round.

References:
  Frankle and Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural
  Networks", ICLR 2019. Fed-LTP: the update rule of ALGORITHMS.md.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class PruningSchedule(NamedTuple):
    """Iterative magnitude pruning: ``rate`` of the remaining weights every ``every`` rounds.

    Attributes:
      target: the final sparsity ``s`` in ``[0, 1)``.
      rate: the fraction of the remaining prunable weights cut per step, in ``(0, 1]``.
      every: rounds between pruning steps (round ``every`` is the first).
    """

    target: float
    rate: float
    every: int

    def check(self) -> PruningSchedule:
        if not 0 <= self.target < 1:
            raise ValueError(f"Expected a target sparsity in [0, 1), got {self.target!r}.")
        if not 0 < self.rate <= 1:
            raise ValueError(f"Expected a pruning rate in (0, 1], got {self.rate!r}.")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"Expected pruning every >= 1 rounds, got {self.every!r}.")
        return self

    @property
    def steps(self) -> int:
        """The pruning steps that reach the target."""
        if self.target == 0:
            return 0
        if self.rate == 1:
            return 1
        return math.ceil(math.log(1 - self.target) / math.log(1 - self.rate) - 1e-9)

    def sparsity(self, steps: jax.Array) -> jax.Array:
        """The sparsity after ``steps`` accepted pruning steps."""
        steps = jnp.asarray(steps, jnp.float32)
        return jnp.minimum(self.target, 1 - (1 - self.rate) ** steps)

    def is_pruning_round(self, round_number: jax.Array, steps: jax.Array) -> jax.Array:
        """Whether round ``round_number`` (1-based) prunes, ``steps`` having been taken."""
        return (round_number % self.every == 0) & (steps < self.steps)


class LaplaceValidation(NamedTuple):
    """The noisy acceptance test of a pruning step (see the module docstring).

    Attributes:
      epsilon: ``eps_v`` of each validation (pure DP).
      loss_bound: ``B``: each example's loss is clipped to ``[0, B]``.
      tolerance: a step is accepted when the noisy mean loss increase is at most this.
    """

    epsilon: float
    loss_bound: float
    tolerance: float = 0.0

    def check(self) -> LaplaceValidation:
        if not self.epsilon > 0:
            raise ValueError(f"Expected a validation epsilon > 0, got {self.epsilon!r}.")
        if not self.loss_bound > 0:
            raise ValueError(f"Expected a validation loss bound > 0, got {self.loss_bound!r}.")
        return self

    @property
    def rho(self) -> float:
        """zCDP of one validation: ``eps_v^2 / 2``."""
        return self.epsilon**2 / 2


class PruningState(NamedTuple):
    """The server's mask (1 kept, 0 pruned, shaped as the parameters) and progress."""

    mask: Any
    rounds: jax.Array
    steps: jax.Array
    validated: jax.Array  # 1 if the last round ran a validation, else 0


def prunable(params: Any) -> Any:
    """The default prunable tensors: those with two or more dimensions."""
    return jax.tree.map(lambda x: jnp.ndim(x) >= 2, params)


def sparsity(mask: Any, which: Any) -> jax.Array:
    """The fraction of pruned coordinates over the prunable tensors ``which``."""
    chosen = [m for m, w in zip(jax.tree.leaves(mask), jax.tree.leaves(which)) if w]
    total = sum(m.size for m in chosen)
    pruned = sum(jnp.sum(m == 0, dtype=jnp.int32) for m in chosen)
    return jnp.asarray(pruned, jnp.float32) / max(total, 1)


def magnitude_mask(params: Any, mask: Any, which: Any, target: jax.Array) -> Any:
    """The mask that prunes the smallest-magnitude prunable weights to sparsity ``target``.

    Already pruned weights stay pruned; exactly ``floor(target d)`` of the ``d`` prunable
    coordinates are cut (ties broken by position). Non-prunable tensors keep their mask.
    """
    leaves, tree = jax.tree.flatten(params)
    masks, chosen = jax.tree.leaves(mask), jax.tree.leaves(which)
    scores = [
        jnp.ravel(jnp.where(m > 0, jnp.abs(w), -1.0)) for w, m, c in zip(leaves, masks, chosen) if c
    ]
    if not scores:
        return mask
    flat = jnp.concatenate(scores)
    cut = jnp.floor(target * flat.size).astype(jnp.int32)
    order = jnp.argsort(flat, stable=True)
    keep = jnp.zeros(flat.shape, bool).at[order].set(jnp.arange(flat.size) >= cut)
    new, offset = [], 0
    for m, c in zip(masks, chosen):
        if c:
            new.append(keep[offset : offset + m.size].reshape(m.shape).astype(m.dtype))
            offset += m.size
        else:
            new.append(m)
    return jax.tree.unflatten(tree, new)


def apply_mask() -> optax.GradientTransformationExtraArgs:
    """Multiplies the updates by the keyword argument ``mask`` (required)."""

    def update_fn(updates, state, params=None, *, mask, **extra_args):
        del params, extra_args
        return jax.tree.map(lambda u, m: u * m.astype(u.dtype), updates, mask), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def magnitude_pruning(
    schedule: PruningSchedule,
    *,
    validation: LaplaceValidation | None = None,
    which: Callable[[Any], Any] = prunable,
) -> optax.GradientTransformationExtraArgs:
    """Server-side pruning of the model the updates lead to (see the module docstring).

    Args:
      schedule: when and how far to prune.
      validation: the Laplace acceptance test, or None to accept every step. With it,
        ``update`` needs the keyword arguments ``key`` and ``validation_losses``:
        ``params -> (losses [n], weights [n])``, the per-example losses of a candidate model
        on ``n`` (a static number of) validation examples, with 0/1 weights for examples
        that do not count.
      which: ``params -> boolean pytree`` of the prunable tensors.

    Returns:
      A transformation to chain after the server optimizer. It needs ``params``.
    """
    schedule = schedule.check()
    validation = validation.check() if validation is not None else None

    def init_fn(params):
        zero = jnp.zeros((), jnp.int32)
        return PruningState(jax.tree.map(jnp.ones_like, params), zero, zero, zero)

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("magnitude_pruning needs the parameters: pass params to update.")
        chosen = which(params)
        dense = jax.tree.map(lambda p, u, m: (p + u) * m, params, updates, state.mask)
        rounds = state.rounds + 1
        prune = schedule.is_pruning_round(rounds, state.steps)

        def pruned(_):
            target = schedule.sparsity(state.steps + 1)
            candidate = magnitude_mask(dense, state.mask, chosen, target)
            if validation is None:
                return candidate, jnp.asarray(True)
            ok = _accepted(
                validation, dense, candidate, extra_args["validation_losses"], extra_args["key"]
            )
            return jax.tree.map(lambda c, m: jnp.where(ok, c, m), candidate, state.mask), ok

        # The sort runs on pruning rounds only.
        mask, accept = jax.lax.cond(prune, pruned, lambda _: (state.mask, jnp.asarray(False)), None)
        accept = accept & prune
        new_params = jax.tree.map(jnp.multiply, dense, mask)
        new_state = PruningState(
            mask,
            rounds,
            state.steps + accept.astype(jnp.int32),
            (prune & (validation is not None)).astype(jnp.int32),
        )
        return jax.tree.map(jnp.subtract, new_params, params), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _accepted(validation, dense, candidate_mask, losses_of, key) -> jax.Array:
    """Whether the noisy mean loss increase of the pruned model is within the tolerance."""
    bound = validation.loss_bound
    before, weights = losses_of(dense)
    after, _ = losses_of(jax.tree.map(jnp.multiply, dense, candidate_mask))
    n = weights.size  # static: the denominator may not depend on the data
    change = jnp.sum(weights * (jnp.clip(after, 0, bound) - jnp.clip(before, 0, bound))) / n
    noise = jax.random.laplace(key, ()) * bound / (n * validation.epsilon)
    return change + noise <= validation.tolerance
