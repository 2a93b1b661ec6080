"""Linear correction terms added to a local step's gradient, as an optax transformation.

.. math::

  g \\leftarrow g + \\textstyle\\sum_{a \\in \\text{plus}} a - \\sum_{b \\in \\text{minus}} b,

where each term is a keyword-only extra argument of ``update`` (a pytree like the
parameters), so it can differ per client and per round. SCAFFOLD corrects the client drift
with its control variates, ``plus=("control",), minus=("client_control",)`` (``g + c -
c_i``); FedDyn subtracts the linear term of its dynamic regularizer,
``minus=("client_gradient",)``. Put it before the base optimizer::

  opt = optax.chain(correction(plus=("control",), minus=("client_control",)), optax.sgd(lr))
  opt.update(grads, state, params, control=c, client_control=c_i)

References:
  Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning",
  ICML 2020. Acar et al., "Federated Learning Based on Dynamic Regularization", ICLR 2021.
"""

from __future__ import annotations

from typing import Sequence

import jax
import optax


def correction(
    *, plus: Sequence[str] = (), minus: Sequence[str] = ()
) -> optax.GradientTransformationExtraArgs:
    """Adds the extra arguments named in ``plus`` to the updates and subtracts those in
    ``minus``.

    Args:
      plus, minus: names of keyword-only extra arguments of ``update``; every one is
        required at each call (a missing term is an error, never a silent zero).

    Returns:
      A transformation whose ``update`` needs those keywords.
    """
    plus, minus = tuple(plus), tuple(minus)
    names = plus + minus
    if not names:
        raise ValueError("Expected at least one correction term in plus or minus, got none.")
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"Expected distinct, non-empty term names, got {names!r}.")

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params
        missing = [n for n in names if n not in extra_args]
        if missing:
            raise ValueError(f"correction() needs the extra arguments {missing} in update(...).")
        for sign, group in ((1.0, plus), (-1.0, minus)):
            for name in group:
                updates = jax.tree.map(
                    lambda g, t: g + sign * t.astype(g.dtype), updates, extra_args[name]
                )
        return updates, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
