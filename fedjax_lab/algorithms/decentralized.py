"""The decentralized family: DFedAvg, DFedAvgM, DFedSAM and DFedSAM-MGS.

Every client ``i`` keeps its own model ``x_i``; there is no server. In each round all
clients, in parallel, run K local steps from their own model and then gossip with their
neighbours through the mixing matrix ``W`` (row ``i`` = the weights client ``i`` gives):

.. math::

  y_i = \\mathrm{LocalSteps}_K(x_i), \\qquad x_i \\leftarrow \\sum_j (W^Q)_{ij} \\, y_j .

The local optimizer decides the member of the family: SGD (DFedAvg), heavy-ball SGD with
momentum reset every round (DFedAvgM), ``chain(sam(rho), sgd)`` (DFedSAM); ``Q > 1``
gossip steps per round is DFedSAM-MGS. ``order="gossip_then_train"`` is the update order
of the released DFedSAM code (mix the previous round's models first, then train).

References:
  Sun et al., "Decentralized Federated Averaging", IEEE TPAMI 2022 (DFedAvg, DFedAvgM).
  Shi et al., "Improving the Model Consistency of Decentralized Federated Learning",
  ICML 2023 (DFedSAM, DFedSAM-MGS).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_lab import clients
from fedjax_lab import gossip as gossip_lib
from fedjax_lab import local
from fedjax_lab.algorithms import base
from fedjax_lab.transforms import sam

ORDERS = ("train_then_gossip", "gossip_then_train")


class DecentralizedState(NamedTuple):
    """State of a decentralized algorithm.

    Attributes:
      params: every client's model, leaves ``[N, ...]``.
      round: int32 scalar, rounds completed so far.
    """

    params: Any
    round: jax.Array


def messages_per_gossip_step(mixing: Any) -> jax.Array:
    """Models sent in one gossip step: the nonzero off-diagonal weights of ``W``."""
    if isinstance(mixing, gossip_lib.CirculantMixing):
        others = jnp.asarray([o != 0 for o in mixing.offsets], dtype=bool)
        per_client = jnp.sum((mixing.weights != 0) & others)
        return (mixing.num_clients * per_client).astype(jnp.int32)
    if isinstance(mixing, gossip_lib.SparseMixing):
        own = jnp.arange(mixing.indices.shape[0])[:, None]
        return jnp.sum((mixing.weights != 0) & (mixing.indices != own)).astype(jnp.int32)
    w = jnp.asarray(mixing)
    return jnp.sum((w != 0) & ~jnp.eye(w.shape[0], dtype=bool)).astype(jnp.int32)


def _check_mixing(mixing: Any, num_clients: int, name: str) -> None:
    if mixing is None:
        raise ValueError(f"{name} is decentralized: pass the round's mixing matrix, got None.")
    if isinstance(mixing, (gossip_lib.SparseMixing, gossip_lib.CirculantMixing)):
        if gossip_lib.num_clients(mixing) != num_clients:
            raise ValueError(
                f"Expected a {type(mixing).__name__} over {num_clients} clients, got one over "
                f"{gossip_lib.num_clients(mixing)}."
            )
    elif jnp.shape(mixing) != (num_clients, num_clients):
        raise ValueError(
            f"Expected a mixing matrix of shape ({num_clients}, {num_clients}), "
            f"got {jnp.shape(mixing)}."
        )


def decentralized(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    gossip_steps: int = 1,
    order: str = "train_then_gossip",
    lr_decay: float = 1.0,
    strategy: str = "vmap",
    chunk_size: int | None = None,
    unroll: int | bool = 1,
    name: str = "decentralized",
) -> base.Algorithm:
    """Decentralized local training plus gossip, with any local optimizer.

    Args:
      loss_fn: ``(params, batch) -> scalar`` for one client.
      local_optimizer: the clients' optax transformation (state reset every round).
      num_clients: N; every client trains every round.
      gossip_steps: Q, mixing steps per round (``W^Q``).
      order: ``"train_then_gossip"`` (the papers) or ``"gossip_then_train"`` (released code).
      lr_decay: local updates in round t are multiplied by ``lr_decay ** t``.
      strategy, chunk_size: how clients are mapped (see :func:`fedjax_lab.clients.map_clients`).
      unroll: ``lax.scan`` unrolling of the local steps.
      name: the algorithm's name in metrics and logs.

    Returns:
      An :class:`~fedjax_lab.algorithms.base.Algorithm`; ``round`` expects the round's mixing
      matrix (dense ``[N, N]``, :class:`~fedjax_lab.gossip.SparseMixing` or
      :class:`~fedjax_lab.gossip.CirculantMixing`).
    """
    num_clients = base.check_positive_int("num_clients", num_clients)
    gossip_steps = base.check_positive_int("gossip_steps", gossip_steps)
    if order not in ORDERS:
        raise ValueError(f"Unknown order {order!r}; expected one of {ORDERS}.")
    train = base.cohort_training(
        loss_fn,
        local_optimizer,
        lr_decay=lr_decay,
        strategy=strategy,
        chunk_size=chunk_size,
        unroll=unroll,
    )

    def init(params):
        return DecentralizedState(
            params=clients.broadcast_to_clients(params, num_clients), round=jnp.zeros((), jnp.int32)
        )

    def cohort(key):
        del key
        return jnp.arange(num_clients, dtype=jnp.int32)

    def round_fn(state, mixing, batches, key):
        _check_mixing(mixing, num_clients, name)
        base.check_batches(batches, num_clients)
        keys = clients.client_keys(jax.random.fold_in(key, base.TRAIN_STREAM), cohort(key))
        params = state.params
        if order == "gossip_then_train":
            params = gossip_lib.gossip(mixing, params, steps=gossip_steps)
        result = train(params, batches, keys, state.round)
        params = result.params
        if order == "train_then_gossip":
            params = gossip_lib.gossip(mixing, params, steps=gossip_steps)
        metrics = {
            "train_loss": jnp.mean(result.losses),
            "models_sent": gossip_steps * messages_per_gossip_step(mixing),
        }
        return DecentralizedState(params=params, round=state.round + 1), metrics

    def client_params(state):
        return state.params

    return base.Algorithm(
        name=name,
        num_clients=num_clients,
        cohort_size=num_clients,
        decentralized=True,
        init=init,
        cohort=cohort,
        round=round_fn,
        client_params=client_params,
    )


def dfedavg(loss_fn: local.LossFn, *, learning_rate: float, **kwargs: Any) -> base.Algorithm:
    """DFedAvg: :func:`decentralized` with local SGD."""
    return decentralized(
        loss_fn, optax.sgd(learning_rate), name=kwargs.pop("name", "dfedavg"), **kwargs
    )


def dfedavgm(
    loss_fn: local.LossFn, *, learning_rate: float, momentum: float, **kwargs: Any
) -> base.Algorithm:
    """DFedAvgM: :func:`decentralized` with heavy-ball SGD (buffer reset every round)."""
    if not 0 <= momentum < 1:
        raise ValueError(f"Expected momentum in [0, 1), got {momentum!r}.")
    return decentralized(
        loss_fn,
        optax.sgd(learning_rate, momentum=momentum),
        name=kwargs.pop("name", "dfedavgm"),
        **kwargs,
    )


def dfedsam(
    loss_fn: local.LossFn,
    *,
    learning_rate: float,
    rho: float,
    momentum: float | None = None,
    adaptive: bool = False,
    **kwargs: Any,
) -> base.Algorithm:
    """DFedSAM: :func:`decentralized` with local ``chain(sam(rho), sgd(learning_rate))``.

    With ``gossip_steps=Q > 1`` this is DFedSAM-MGS.
    """
    optimizer = optax.chain(
        sam(rho, adaptive=adaptive), optax.sgd(learning_rate, momentum=momentum)
    )
    default = "dfedsam" if kwargs.get("gossip_steps", 1) == 1 else "dfedsam_mgs"
    return decentralized(loss_fn, optimizer, name=kwargs.pop("name", default), **kwargs)
