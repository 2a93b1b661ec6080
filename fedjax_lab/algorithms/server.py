"""Server-based algorithms: FedAvg and FedSAM.

Each round the server samples a cohort of ``m`` of the ``N`` clients uniformly without
replacement. Every sampled client starts from the global model ``x``, runs K local steps of
its optimizer, and reports ``delta_i = y_i - x``; the server applies the mean update

.. math::

  x \\leftarrow x + \\eta_g \\, \\frac{1}{m} \\sum_{i \\in S} \\Delta_i .

FedSAM is FedAvg whose local optimizer is ``chain(sam(rho), sgd(lr))``.

References:
  McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized
  Data", AISTATS 2017. Qu et al., "Generalized Federated Learning via Sharpness Aware
  Minimization", ICML 2022 (FedSAM).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_lab import clients
from fedjax_lab import local
from fedjax_lab.algorithms import base
from fedjax_lab.transforms import sam


class ServerState(NamedTuple):
    """State of a server-based algorithm.

    Attributes:
      params: the global model (no client axis).
      round: int32 scalar, rounds completed so far.
    """

    params: Any
    round: jax.Array


def fedavg(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    server_learning_rate: float = 1.0,
    lr_decay: float = 1.0,
    strategy: str = "vmap",
    chunk_size: int | None = None,
    unroll: int | bool = 1,
    name: str = "fedavg",
) -> base.Algorithm:
    """FedAvg with any local optimizer.

    Args:
      loss_fn: ``(params, batch) -> scalar`` for one client.
      local_optimizer: the clients' optax transformation (state reset every round).
      num_clients: N.
      clients_per_round: m, sampled uniformly without replacement each round.
      server_learning_rate: eta_g, the step on the mean client update.
      lr_decay: local updates in round t are multiplied by ``lr_decay ** t``.
      strategy, chunk_size: how clients are mapped (see :func:`fedjax_lab.clients.map_clients`).
      unroll: ``lax.scan`` unrolling of the local steps.
      name: the algorithm's name in metrics and logs.

    Returns:
      An :class:`~fedjax_lab.algorithms.base.Algorithm`; ``round`` expects ``mixing=None``.
    """
    num_clients = base.check_positive_int("num_clients", num_clients)
    m = base.check_positive_int("clients_per_round", clients_per_round)
    if m > num_clients:
        raise ValueError(f"Expected clients_per_round <= num_clients={num_clients}, got {m}.")
    if not server_learning_rate > 0:
        raise ValueError(f"Expected server_learning_rate > 0, got {server_learning_rate!r}.")
    train = base.cohort_training(
        loss_fn,
        local_optimizer,
        lr_decay=lr_decay,
        strategy=strategy,
        chunk_size=chunk_size,
        unroll=unroll,
    )

    def init(params):
        return ServerState(params=params, round=jnp.zeros((), jnp.int32))

    def cohort(key):
        ids = jax.random.choice(
            jax.random.fold_in(key, base.COHORT_STREAM), num_clients, (m,), replace=False
        )
        return jnp.sort(ids).astype(jnp.int32)

    def round_fn(state, mixing, batches, key):
        if mixing is not None:
            raise ValueError(f"{name} is server-based: pass mixing=None, got {type(mixing)}.")
        base.check_batches(batches, m)
        ids = cohort(key)
        keys = clients.client_keys(jax.random.fold_in(key, base.TRAIN_STREAM), ids)
        result = train(state.params, batches, keys, state.round, shared_start=True)
        mean_delta = jax.tree.map(lambda y, x: jnp.mean(y, axis=0) - x, result.params, state.params)
        params = jax.tree.map(lambda x, d: x + server_learning_rate * d, state.params, mean_delta)
        metrics = {
            "train_loss": jnp.mean(result.losses),
            # Download of the global model and upload of the update, per sampled client.
            "models_sent": jnp.asarray(2 * m, jnp.int32),
        }
        return ServerState(params=params, round=state.round + 1), metrics

    def client_params(state):
        return clients.broadcast_to_clients(state.params, num_clients)

    return base.Algorithm(
        name=name,
        num_clients=num_clients,
        cohort_size=m,
        decentralized=False,
        init=init,
        cohort=cohort,
        round=round_fn,
        client_params=client_params,
    )


def fedsam(
    loss_fn: local.LossFn,
    *,
    learning_rate: float,
    rho: float,
    momentum: float | None = None,
    adaptive: bool = False,
    **kwargs: Any,
) -> base.Algorithm:
    """FedSAM: :func:`fedavg` with local steps ``chain(sam(rho), sgd(learning_rate))``.

    Other keyword arguments are those of :func:`fedavg`.
    """
    optimizer = optax.chain(
        sam(rho, adaptive=adaptive), optax.sgd(learning_rate, momentum=momentum)
    )
    return fedavg(loss_fn, optimizer, name=kwargs.pop("name", "fedsam"), **kwargs)
