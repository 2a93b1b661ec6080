"""Local training: the optax steps one client runs in a round, as pure functions.

For one client with parameters ``y_0`` and batches ``b_0 .. b_{K-1}``:

.. math::

  (\\ell_k, g_k) = \\mathrm{gradient}(\\ell, y_k, b_k), \\quad
  (u_k, s_{k+1}) = \\mathrm{opt.update}(g_k, s_k, y_k), \\quad y_{k+1} = y_k + c \\, u_k,

where ``c`` is a round-level step multiplier (``lr_decay ** round`` in the algorithms).
Every step hands the optimizer the keyword arguments ``loss_fn`` (the loss on the step's
batch as a function of the parameters, used by SAM and zeroth-order estimators) and
``key`` (``fold_in(key, k)``, used by noise-adding transformations), plus any
``optimizer_args`` of the client (a pruning mask, a proximal anchor, ...), so
transformations that need them compose through ``optax.chain``; the others ignore them.

Three hooks:

* ``step_count``: the client runs only its first ``K_i <= K`` steps; later steps leave the
  parameters and optimizer state untouched. Clients with different counts stay vectorized
  (a step mask, not a shorter loop), and a client ends exactly where its own ``K_i``-step
  run ends.
* ``gradient``: how ``g_k`` is computed (:mod:`fedjax_lab.gradients`); ``None`` never
  differentiates the model: the optimizer gets zeros and builds its update from
  ``loss_fn`` and ``key`` alone.
* ``trains``: the subset of the parameters the steps train (a boolean pytree). The others
  are frozen: the optimizer, its state and the ``loss_fn`` it receives see only the trained
  leaves (so SAM perturbs, and measures its norm over, the trained part alone).

A client's round is a sequence of :class:`Phase` s (:func:`run_phases`), each with its own
optimizer, number of steps and trained subset: DFedAlt trains the personal head, then the
shared body. The functions are written for a single client; algorithms map them over the
client axis with :func:`fedjax_lab.clients.map_clients`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from fedjax_lab import gradients
from fedjax_lab import partition

LossFn = Callable[[Any, Any], jax.Array]  # (params, batch) -> scalar loss


class LocalResult(NamedTuple):
    """What local training returns.

    Attributes:
      params: the parameters after the last step.
      opt_state: the optimizer state after the last step (a tuple, one per phase, from
        :func:`run_phases`).
      losses: float32 [K], the loss of each step's batch before that step's update.
      active: bool [K], which steps ran (all of them unless a step count was given).
    """

    params: Any
    opt_state: Any
    losses: jax.Array
    active: jax.Array


def _frozen_mask_problem(trains: Any, params: Any) -> str | None:
    if jax.tree.structure(trains) != jax.tree.structure(params):
        return f"structure {jax.tree.structure(trains)} for parameters {jax.tree.structure(params)}"
    bad = [leaf for leaf in jax.tree.leaves(trains) if not isinstance(leaf, bool)]
    return f"non-boolean leaves such as {bad[0]!r}" if bad else None


def local_train(
    optimizer: optax.GradientTransformation,
    loss_fn: LossFn,
    params: Any,
    batches: Any,
    key: jax.Array,
    *,
    opt_state: Any = None,
    step_scale: jax.Array | float = 1.0,
    unroll: int | bool = 1,
    step_count: jax.Array | int | None = None,
    gradient: gradients.GradientFn | None = gradients.batch_gradient,
    optimizer_args: dict[str, Any] | None = None,
    trains: Any = None,
    first_step: int = 0,
) -> LocalResult:
    """Runs one local step per leading-axis entry of ``batches``.

    Args:
      optimizer: any optax transformation (plain or taking extra arguments).
      loss_fn: ``(params, batch) -> scalar``.
      params: the client's starting parameters.
      batches: a pytree whose leaves have a leading axis of length K (one batch per step).
      key: the client's PRNG key for this round; step k receives ``fold_in(key, first_step + k)``.
      opt_state: optimizer state to continue from; ``None`` starts fresh with
        ``optimizer.init`` (the reset-every-round behaviour of the papers).
      step_scale: multiplies every update (round-level learning-rate schedule).
      unroll: passed to ``lax.scan``; unrolling helps convolutions on XLA:CPU.
      step_count: run only the first ``step_count`` steps (an int32 scalar, may be traced);
        ``None`` runs all K.
      gradient: the gradient hook (:mod:`fedjax_lab.gradients`), or ``None`` for none.
      optimizer_args: extra keyword arguments for every ``optimizer.update`` call.
      trains: a pytree of Python booleans over ``params``: the leaves trained; ``None``
        trains all of them.
      first_step: the index of this run's first step in the client's round (for keys).

    Returns:
      A :class:`LocalResult`.
    """
    optimizer = optax.with_extra_args_support(optimizer)
    if trains is None:
        trained, frozen = params, None
    else:
        problem = _frozen_mask_problem(trains, params)
        if problem:
            raise ValueError(
                f"Expected `trains` to be a boolean pytree over params, got {problem}."
            )
        trained, frozen = partition.split(params, trains)
    full = (lambda t: t) if frozen is None else (lambda t: partition.merge(t, frozen))
    if opt_state is None:
        opt_state = optimizer.init(trained)
    extra = dict(optimizer_args or {})
    for reserved in ("loss_fn", "key"):
        if reserved in extra:
            raise ValueError(f"optimizer_args may not set {reserved!r}; local_train passes it.")

    def step(carry, inputs):
        y, state = carry
        batch, k = inputs
        part_loss = lambda p, b: loss_fn(full(p), b)
        step_key = jax.random.fold_in(key, first_step + k)
        if gradient is None:
            loss = part_loss(y, batch)
            # zeros built from shapes: zeros_like would carry the sharding of y into a
            # shard_map body (a client mesh), where it does not apply.
            grads = jax.tree.map(lambda v: jnp.zeros(v.shape, v.dtype), y)
        else:
            loss, grads = gradient(part_loss, y, batch, step_key)
        updates, new_state = optimizer.update(
            grads, state, y, loss_fn=lambda p: part_loss(p, batch), key=step_key, **extra
        )
        updates = jax.tree.map(lambda u: u * step_scale, updates)
        new_y = optax.apply_updates(y, updates)
        if step_count is None:
            return (new_y, new_state), (loss, jnp.asarray(True))
        active = k < step_count
        keep = lambda new, old: jnp.where(active, new, old)
        return (jax.tree.map(keep, new_y, y), jax.tree.map(keep, new_state, state)), (loss, active)

    num_steps = jax.tree.leaves(batches)[0].shape[0]
    (trained, opt_state), (losses, active) = jax.lax.scan(
        step, (trained, opt_state), (batches, jnp.arange(num_steps)), unroll=unroll
    )
    return LocalResult(full(trained), opt_state, losses, active)


class Phase(NamedTuple):
    """One local phase of a client's round.

    Attributes:
      optimizer: the phase's optax transformation (its state reset every round).
      steps: how many of the round's batches it consumes; ``None`` takes all that the
        earlier phases left (only the last phase may say None).
      trains: the partition label it trains (``"shared"`` or ``"personal"``), or ``None``
        for every parameter.
      gradient: the gradient hook (:mod:`fedjax_lab.gradients`), or ``None`` for none.
    """

    optimizer: optax.GradientTransformation
    steps: int | None = None
    trains: str | None = None
    gradient: gradients.GradientFn | None = gradients.batch_gradient


def check_phases(phases: Sequence[Phase]) -> tuple[Phase, ...]:
    """Validates a sequence of phases; returns it as a tuple."""
    phases = tuple(phases)
    if not phases:
        raise ValueError("Expected at least one local phase, got none.")
    for index, phase in enumerate(phases):
        if not isinstance(phase, Phase):
            raise ValueError(
                f"Expected local.Phase objects, got {type(phase).__name__} at {index}."
            )
        if phase.steps is None and index != len(phases) - 1:
            raise ValueError(
                f"Only the last phase may take the remaining steps; phase {index} does."
            )
        if phase.steps is not None and (isinstance(phase.steps, bool) or phase.steps < 1):
            raise ValueError(f"Expected phase {index} steps >= 1, got {phase.steps!r}.")
        if phase.trains is not None and phase.trains not in partition.LABELS:
            raise ValueError(
                f"Expected phase {index} trains in {partition.LABELS} or None, got {phase.trains!r}."
            )
    return phases


def phase_steps(phases: Sequence[Phase]) -> int | None:
    """The batches a round of these phases needs, or None when the last takes the rest."""
    if phases[-1].steps is None:
        return None
    return sum(p.steps for p in phases)


def phase_mask(phase: Phase, labels: Any) -> Any:
    """The boolean pytree of the leaves ``phase`` trains, over the partition ``labels``
    (:func:`fedjax_lab.partition.resolve`); None when it trains every leaf."""
    if phase.trains is None:
        return None
    if labels is None:
        raise ValueError(f"A phase trains the {phase.trains!r} part: pass the labels.")
    return jax.tree.map(lambda lab: lab == phase.trains, labels)


def initial_states(phases: Sequence[Phase], params: Any, labels: Any = None) -> tuple:
    """The phases' optimizer states at the start of a round, as :func:`run_phases` makes
    them (each over the part its phase trains)."""
    states = []
    for phase in phases:
        trains = phase_mask(phase, labels)
        part = params if trains is None else partition.split(params, trains)[0]
        states.append(optax.with_extra_args_support(phase.optimizer).init(part))
    return tuple(states)


def run_phases(
    phases: Sequence[Phase],
    loss_fn: LossFn,
    params: Any,
    batches: Any,
    key: jax.Array,
    *,
    labels: Any = None,
    step_scale: jax.Array | float = 1.0,
    unroll: int | bool = 1,
    step_count: jax.Array | int | None = None,
    optimizer_args: dict[str, Any] | None = None,
) -> LocalResult:
    """The phases one after the other, each on its own slice of ``batches``.

    Args:
      phases: validated :class:`Phase` s.
      labels: the partition labels of ``params`` (:func:`fedjax_lab.partition.resolve`),
        needed when a phase trains one part.
      step_count: each phase runs at most this many of its steps.
      Others: as for :func:`local_train`.

    Returns:
      A :class:`LocalResult` whose ``losses`` and ``active`` cover all phases' steps in order
      and whose ``opt_state`` is the tuple of the phases' final states.
    """
    total = jax.tree.leaves(batches)[0].shape[0]
    needed, fixed = phase_steps(phases), sum(p.steps or 0 for p in phases)
    if needed is not None and needed != total:
        raise ValueError(f"The local phases need {needed} batches per client, got {total}.")
    if needed is None and fixed >= total:
        raise ValueError(
            f"The local phases before the last take {fixed} of the {total} batches per client, "
            "leaving none for the last."
        )
    start, states, losses, active = 0, [], [], []
    for phase in phases:
        stop = total if phase.steps is None else start + phase.steps
        trains = phase_mask(phase, labels)
        result = local_train(
            phase.optimizer,
            loss_fn,
            params,
            jax.tree.map(lambda b: b[start:stop], batches),
            key,
            step_scale=step_scale,
            unroll=unroll,
            step_count=step_count,
            gradient=phase.gradient,
            optimizer_args=optimizer_args,
            trains=trains,
            first_step=start,
        )
        params, start = result.params, stop
        states.append(result.opt_state)
        losses.append(result.losses)
        active.append(result.active)
    return LocalResult(params, tuple(states), jnp.concatenate(losses), jnp.concatenate(active))
