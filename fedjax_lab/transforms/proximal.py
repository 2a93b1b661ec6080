"""A proximal pull toward an anchor point, as a composable optax transformation.

.. math::

  g \\leftarrow g + \\lambda \\, (y - a),

the gradient of ``(lambda / 2) ||y - a||^2`` added to the incoming gradient. The anchor
``a`` arrives as the keyword-only extra argument ``anchor`` (a pytree like the
parameters), so it can differ per client and per round: FedProx pulls toward the global
model, FedSpeed toward the global model minus the client's correction. Put it before the
base optimizer (and after SAM, whose gradient it then corrects)::

  opt = optax.chain(sam(rho), proximal(0.1), optax.sgd(lr))
  opt.update(grads, state, params, loss_fn=loss_fn, anchor=x)

References:
  Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020 (FedProx).
"""

from __future__ import annotations

import jax
import optax


def proximal(strength: float) -> optax.GradientTransformationExtraArgs:
    """Adds ``strength * (params - anchor)`` to the updates.

    Args:
      strength: ``lambda >= 0``.

    Returns:
      A transformation whose ``update`` needs ``params`` and the keyword ``anchor``.
    """
    if not strength >= 0:
        raise ValueError(f"Expected a proximal strength >= 0, got {strength!r}.")

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, anchor, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("proximal() needs the current params in update(...).")
        pulled = jax.tree.map(
            lambda g, y, a: g + strength * (y - a).astype(g.dtype), updates, params, anchor
        )
        return pulled, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
