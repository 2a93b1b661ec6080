"""The decentralized family: DFedAvg, DFedAvgM, DFedSAM and DFedSAM-MGS.

Every client ``i`` keeps its own model ``x_i``; there is no server. In each round all
clients, in parallel, run K local steps from their own model and then gossip with their
neighbours through the mixing matrix ``W`` (row ``i`` = the weights client ``i`` gives):

.. math::

  y_i = \\mathrm{LocalSteps}_K(x_i), \\qquad x_i \\leftarrow \\sum_j (W^Q)_{ij} \\, y_j .

The local optimizer decides the member of the family: SGD (DFedAvg), heavy-ball SGD with
momentum reset every round (DFedAvgM), ``chain(sam(rho), sgd)`` (DFedSAM); ``Q > 1``
gossip steps per round is DFedSAM-MGS. ``order="gossip_then_train"`` is the update order
of the released DFedSAM code (mix the previous round's models first, then train). Each is
a :func:`~fedjax_lab.algorithms.rounds.gossip_round` with the
:func:`~fedjax_lab.algorithms.communication.gossip` piece.

References:
  Sun et al., "Decentralized Federated Averaging", IEEE TPAMI 2022 (DFedAvg, DFedAvgM).
  Shi et al., "Improving the Model Consistency of Decentralized Federated Learning",
  ICML 2023 (DFedSAM, DFedSAM-MGS).
"""

from __future__ import annotations

from typing import Any

import optax

from fedjax_lab import local
from fedjax_lab import partition
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import client as client_lib
from fedjax_lab.algorithms import communication
from fedjax_lab.algorithms import rounds
from fedjax_lab.transforms import sharpness_aware


def decentralized(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    gossip_steps: int = 1,
    order: str = "train_then_gossip",
    labels: Any = None,
    host_hook: base.HostHook | None = None,
    name: str = "decentralized",
    **client_options: Any,
) -> base.Algorithm:
    """Decentralized local training plus gossip, with any local optimizer.

    Args:
      loss_fn: ``(params, batch) -> scalar`` for one client.
      local_optimizer: the clients' optax transformation (state reset every round).
      num_clients: N; every client trains every round.
      gossip_steps: Q, mixing steps per round (``W^Q``).
      order: ``"train_then_gossip"`` or ``"gossip_then_train"``.
      labels: a partition whose shared part alone is gossiped, or None (everything).
      host_hook: host-side work after every round, or None.
      name: the algorithm's name in metrics and logs.
      **client_options: the other settings of the client update
        (:func:`~fedjax_lab.algorithms.client.client_update`: ``transform``,
        ``step_counts``, ``lr_decay``).

    Returns:
      An :class:`~fedjax_lab.algorithms.base.Algorithm`; ``round`` expects the round's mixing
      matrix (dense ``[N, N]``, :class:`~fedjax_lab.gossip.SparseMixing` or
      :class:`~fedjax_lab.gossip.CirculantMixing`).
    """
    return rounds.gossip_round(
        loss_fn,
        name=name,
        num_clients=num_clients,
        client=client_lib.client_update(local.Phase(local_optimizer), **client_options),
        communication=communication.gossip(gossip_steps),
        order=order,
        labels=partition.everything_shared if labels is None else labels,
        host_hook=host_hook,
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
    optimizer = sharpness_aware.sam_sgd(learning_rate, rho, momentum=momentum, adaptive=adaptive)
    default = "dfedsam" if kwargs.get("gossip_steps", 1) == 1 else "dfedsam_mgs"
    return decentralized(loss_fn, optimizer, name=kwargs.pop("name", default), **kwargs)
