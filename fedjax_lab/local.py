"""Local training: K optax steps of one client, as a pure function.

For one client with parameters ``y_0`` and batches ``b_0 .. b_{K-1}``:

.. math::

  g_k = \\nabla_y \\ell(y_k; b_k), \\quad (u_k, s_{k+1}) = \\mathrm{opt.update}(g_k, s_k, y_k),
  \\quad y_{k+1} = y_k + c \\, u_k,

where ``c`` is a round-level step multiplier (``lr_decay ** round`` in the algorithms).
Every step hands the optimizer two keyword arguments, so transformations that need them
compose through ``optax.chain``: ``loss_fn`` (the loss on the step's batch, a function of the
parameters, used by SAM and zeroth-order estimators) and ``key`` (a PRNG key for that step,
``fold_in(key, k)``, used by noise-adding transformations). Transformations that take no
extra arguments ignore them.

The function is written for a single client; algorithms map it over the client axis
with :func:`fedjax_lab.clients.map_clients`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

LossFn = Callable[[Any, Any], jax.Array]  # (params, batch) -> scalar loss


class LocalResult(NamedTuple):
    """What K local steps return.

    Attributes:
      params: the parameters after the last step.
      opt_state: the optimizer state after the last step.
      losses: float32 [K], the loss of each step's batch before that step's update.
    """

    params: Any
    opt_state: Any
    losses: jax.Array


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
) -> LocalResult:
    """Runs one local step per leading-axis entry of ``batches``.

    Args:
      optimizer: any optax transformation (plain or taking extra arguments).
      loss_fn: ``(params, batch) -> scalar``.
      params: the client's starting parameters.
      batches: a pytree whose leaves have a leading axis of length K (one batch per step).
      key: the client's PRNG key for this round; step k receives ``fold_in(key, k)``.
      opt_state: optimizer state to continue from; ``None`` starts fresh with
        ``optimizer.init(params)`` (the reset-every-round behaviour of the papers).
      step_scale: multiplies every update (round-level learning-rate schedule).
      unroll: passed to ``lax.scan``; unrolling helps convolutions on XLA:CPU.

    Returns:
      A :class:`LocalResult`.
    """
    optimizer = optax.with_extra_args_support(optimizer)
    if opt_state is None:
        opt_state = optimizer.init(params)

    def step(carry, inputs):
        y, state = carry
        batch, k = inputs
        batch_loss = lambda p: loss_fn(p, batch)
        loss, grads = jax.value_and_grad(batch_loss)(y)
        updates, state = optimizer.update(
            grads, state, y, loss_fn=batch_loss, key=jax.random.fold_in(key, k)
        )
        updates = jax.tree.map(lambda u: u * step_scale, updates)
        return (optax.apply_updates(y, updates), state), loss

    num_steps = jax.tree.leaves(batches)[0].shape[0]
    (params, opt_state), losses = jax.lax.scan(
        step, (params, opt_state), (batches, jnp.arange(num_steps)), unroll=unroll
    )
    return LocalResult(params, opt_state, losses)
