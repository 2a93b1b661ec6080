"""The client update: what one client does in a round, shared by both round skeletons.

A :class:`ClientUpdate` is a value made of

* the local :class:`~fedjax_lab.local.Phase` s, each with its optimizer, step count,
  trained part and gradient hook;
* an optional **update transform**: an optax transformation of the client's update
  ``delta_i = y_i - x_i`` (the shared part) before it leaves the client, called with the
  client's key from the privacy stream, ``key=fold_in(privacy, i)``, and the number of
  clients taking part, ``cohort_size`` (clipping, noise, sparsification);
* optional :class:`Persistent` per-client state (rows ``[N, ...]`` in ``State.clients``,
  kept across rounds for every client, sampled or not);
* optional per-client step counts (:func:`fixed_step_counts`, :func:`uniform_step_counts`);
* ``lr_decay``: local updates in round ``t`` are multiplied by ``lr_decay ** t``.

:func:`run` applies it to one client (the skeletons map it over the clients):

.. math::

  y_i = \\mathrm{Phases}(x_i), \\qquad s_i = T(y_i - x_i), \\qquad
  r_i \\leftarrow \\mathrm{Persistent.update}(r_i, (x_i, y_i, s_i, \\dots), \\text{context}).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from fedjax_lab import local
from fedjax_lab import partition
from fedjax_lab import validation

StepCounts = Callable[[jax.Array, jax.Array], jax.Array]  # (key, client ids) -> int32[m]


class Persistent(NamedTuple):
    """Per-client state kept across rounds, for every client (sampled or not).

    Attributes:
      init: ``params -> row``, one client's initial state from the initial model.
      optimizer_args: ``(row, start) -> dict``, extra keyword arguments for the client's
        local optimizer this round (``start`` is the model the client starts from).
      update: ``(row, out, context) -> row``, the row after the round, from the client's
        round (:class:`ClientOutput`: the model it started from, the model it trained, its
        (transformed) update, which steps ran) and the round's :class:`RoundContext` (what
        the server broadcast, the step multiplier).
      start: optional ``(row, received) -> params``, the model the client trains from and
        is evaluated with, from its row and the model it received (FedPer's global body
        with the client's own head); None: the received model.
    """

    init: Callable[[Any], Any]
    optimizer_args: Callable[[Any, Any], dict[str, Any]]
    update: Callable[[Any, "ClientOutput", "RoundContext"], Any]
    start: Callable[[Any, Any], Any] | None = None


class ClientUpdate(NamedTuple):
    """One client's round (see the module docstring); build it with :func:`client_update`."""

    phases: tuple[local.Phase, ...]
    transform: optax.GradientTransformationExtraArgs | None = None
    persistent: Persistent | None = None
    step_counts: StepCounts | None = None
    lr_decay: float = 1.0

    @property
    def steps(self) -> int | None:
        """The batches a round consumes per client, or None for any number."""
        return local.phase_steps(self.phases)


def client_update(
    phases: Sequence[local.Phase] | local.Phase,
    *,
    transform: optax.GradientTransformation | None = None,
    persistent: Persistent | None = None,
    step_counts: StepCounts | None = None,
    lr_decay: float = 1.0,
) -> ClientUpdate:
    """A validated :class:`ClientUpdate` (one phase may be given alone)."""
    phases = local.check_phases([phases] if isinstance(phases, local.Phase) else phases)
    if not 0 < lr_decay <= 1:
        raise ValueError(f"Expected lr_decay in (0, 1], got {lr_decay!r}.")
    if transform is not None:
        transform = optax.with_extra_args_support(transform)
    return ClientUpdate(phases, transform, persistent, step_counts, float(lr_decay))


def fixed_step_counts(counts: Any) -> StepCounts:
    """Client ``i`` runs ``counts[i]`` local steps (per phase) every round."""
    counts = jnp.asarray(counts, jnp.int32)
    if counts.ndim != 1 or bool(jnp.any(counts < 1)):
        raise ValueError(f"Expected a 1-D array of step counts >= 1, got {counts!r}.")
    return lambda key, ids: counts[ids]


def uniform_step_counts(low: int, high: int) -> StepCounts:
    """Each round, every client draws its step count uniformly from ``[low, high]``."""
    low = validation.check_positive_int("low", low)
    high = validation.check_positive_int("high", high)
    if low > high:
        raise ValueError(f"Expected low <= high step counts, got {low} > {high}.")
    return lambda key, ids: jax.vmap(
        lambda i: jax.random.randint(jax.random.fold_in(key, i), (), low, high + 1)
    )(ids).astype(jnp.int32)


class ClientOutput(NamedTuple):
    """What :func:`run` returns for one client.

    Attributes:
      start: the model the client trained from.
      trained: the model after its local phases.
      update: its shared part's update ``T(y - x)`` (``y - x`` without a transform).
      row: its persistent state after the round (``()`` without one; the row it started
        with, when handed to ``Persistent.update``).
      losses, active: each step's loss and whether it ran (``[K]``).
      opt_states: the phases' final optimizer states (a tuple, one per phase).
    """

    start: Any
    trained: Any
    update: Any
    row: Any
    losses: jax.Array
    active: jax.Array
    opt_states: tuple


class RoundContext(NamedTuple):
    """What every client of a round shares: the partition's labels and shared mask, the
    round's step multiplier, what the server broadcasts to the local optimizers, the
    cohort's size and the local steps' unrolling."""

    labels: Any
    keep: Any
    scale: jax.Array
    broadcast: dict[str, Any]
    cohort_size: jax.Array
    unroll: int | bool


def run(
    update: ClientUpdate, loss_fn: local.LossFn, start, row, batches, key, privacy_key, count,
    context: RoundContext,
) -> ClientOutput:
    """One client's round from the model it received (see the module docstring)."""
    persistent = update.persistent
    if persistent is not None and persistent.start is not None:
        start = persistent.start(row, start)
    args = persistent.optimizer_args(row, start) if persistent is not None else {}
    result = local.run_phases(
        update.phases,
        loss_fn,
        start,
        batches,
        key,
        labels=context.labels,
        step_scale=context.scale,
        unroll=context.unroll,
        step_count=count,
        optimizer_args={**args, **context.broadcast},
    )
    trained = result.params
    delta = jax.tree.map(
        jnp.subtract, partition.select(trained, context.keep), partition.select(start, context.keep)
    )
    if update.transform is not None:
        delta, _ = update.transform.update(
            delta,
            update.transform.init(delta),
            start,
            key=privacy_key,
            cohort_size=context.cohort_size,
        )
    out = ClientOutput(start, trained, delta, row, result.losses, result.active, result.opt_state)
    if persistent is not None:
        out = out._replace(row=persistent.update(row, out, context))
    return out


def message_shapes(update: ClientUpdate, encode: Callable, params: Any, labels: Any) -> Any:
    """The shapes of the message ``encode`` makes of a client's round (from its phases'
    initial optimizer states), without running one."""

    def encode_initial(p):
        states = local.initial_states(update.phases, p, partition.resolve(labels, p))
        zeros = jnp.zeros((update.steps or 1,), jnp.float32)
        return encode(ClientOutput(p, p, p, (), zeros, zeros > 0, states))

    return jax.eval_shape(encode_initial, params)
