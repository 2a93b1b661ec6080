"""Partial personalization: DFedAlt, DFedSalt, DFedPGP (decentralized), FedPer and FedRep
(server).

The parameters are split by a partition (:mod:`fedjax_lab.partition`, the classifier head
by default) into a shared part ``u`` and a personal part ``v_i`` that never leaves client
``i``. Per round, decentralized (``order="gossip_then_train"``, the papers' order):

.. math::

  u_i \\leftarrow \\textstyle\\sum_j W_{ij} u_j, \\qquad
  v_i \\leftarrow \\mathrm{Head}^{K_v}(u_i, v_i) \\;(u \\text{ frozen}), \\qquad
  u_i \\leftarrow \\mathrm{Body}^{K_u}(u_i, v_i) \\;(v \\text{ frozen}).

* :func:`dfedalt`: both phases plain SGD, each with its own steps and learning rate;
* :func:`dfedsalt`: the body phase is SAM on ``u`` alone (the perturbation and its norm
  over the shared part only).

Server-based baselines, where the server keeps every client's head ``v_i`` across rounds
(sampled or not, :class:`~fedjax_lab.algorithms.client.Persistent` rows) and averages the
bodies of the cohort:

* :func:`fedper`: a client trains body and head together from ``(u, v_i)``;
* :func:`fedrep`: a client trains its head first with the body frozen, then the body.

On directed graphs, :func:`dfedpgp` runs the same phases and then pushes the shared part
with push-sum (:func:`~fedjax_lab.algorithms.communication.push_sum`) over the round's
column-stochastic ``P``. Client ``i`` trains from its de-biased ``z_i = x_i / w_i``, which
moves its shared part by ``delta_i``, then pushes:

.. math::

  x_i \\leftarrow \\textstyle\\sum_j P_{ij} (w_j z_j + \\delta_j), \\qquad
  w_i \\leftarrow \\textstyle\\sum_j P_{ij} w_j, \\qquad z_i = x_i / w_i.

What is pushed: the update (``push="update"``, the default), as the paper's analysis does (a
gradient push): each client's update enters the network's average with weight ``1/N``
whatever its push-sum weight. ``push="model"`` pushes ``w_i`` times the trained model
instead, which weighs client ``i``'s update by ``w_i``. The update exists only after
training, so the order is train, then push. ``push="off"`` is the released code's variant:
plain gossip (pull-averaging over the round's in-neighbours, a row-stochastic ``W`` such as
``random_in_neighbours`` with ``k = 10``), no push-sum weights.

Every client is evaluated with its own model ``(u_i, v_i)`` on its own test split.

References:
  Shi et al., "Towards More Suitable Personalization in Federated Learning via
  Decentralized Partial Model Training" (DFedAlt, DFedSalt), 2023.
  Liu et al., "Decentralized Directed Collaboration for Personalized Federated Learning"
  (DFedPGP), CVPR 2024.
  Arivazhagan et al., "Federated Learning with Personalization Layers" (FedPer), 2019.
  Collins et al., "Exploiting Shared Representations for Personalized Federated Learning"
  (FedRep), ICML 2021.
"""

from __future__ import annotations

from typing import Any

import optax

from fedjax_lab import local
from fedjax_lab import partition
from fedjax_lab import validation
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import client as client_lib
from fedjax_lab.algorithms import communication
from fedjax_lab.algorithms import rounds
from fedjax_lab.transforms import sharpness_aware

PUSH_VARIANTS = communication.PUSHES + ("off",)  # dfedpgp's; "off" = plain gossip


def alternating_phases(head_optimizer, body_optimizer, head_steps: int, body_steps: int):
    """The head trained for ``head_steps`` with the body frozen, then the body."""
    head_steps = validation.check_positive_int("head_steps", head_steps)
    body_steps = validation.check_positive_int("body_steps", body_steps)
    return [
        local.Phase(head_optimizer, head_steps, trains=partition.PERSONAL),
        local.Phase(body_optimizer, body_steps, trains=partition.SHARED),
    ]


def dfedalt(
    loss_fn: local.LossFn,
    head_optimizer: optax.GradientTransformation,
    body_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    head_steps: int,
    body_steps: int,
    gossip_steps: int = 1,
    order: str = "gossip_then_train",
    name: str = "dfedalt",
    **options: Any,
) -> base.Algorithm:
    """DFedAlt with any head and body optimizers (see the module docstring).

    Args:
      head_optimizer, body_optimizer: the two phases' optax transformations.
      head_steps, body_steps: K_v and K_u; a round consumes ``K_v + K_u`` batches.
      gossip_steps, order: Q and the update order (the papers gossip first).
      **options: ``labels``, the partition whose ``"shared"`` part is gossiped (default
        the head is personal), and the settings of the client update (``transform``,
        ``step_counts``, ``lr_decay``).
    """
    phases = alternating_phases(head_optimizer, body_optimizer, head_steps, body_steps)
    piece = communication.gossip(gossip_steps)
    return _gossiped(loss_fn, phases, piece, num_clients, order, name, **options)


def _gossiped(loss_fn, phases, piece, num_clients, order, name, *, labels=None, **client_options):
    """The gossip round of partially personalized clients (the head personal by default)."""
    return rounds.gossip_round(
        loss_fn,
        name=name,
        num_clients=num_clients,
        client=client_lib.client_update(phases, **client_options),
        communication=piece,
        order=order,
        labels=partition.head_labels if labels is None else labels,
    )


def dfedsalt(
    loss_fn: local.LossFn,
    head_optimizer: optax.GradientTransformation,
    *,
    body_learning_rate: float,
    rho: float,
    name: str = "dfedsalt",
    **kwargs: Any,
) -> base.Algorithm:
    """DFedSalt: :func:`dfedalt` whose body phase is ``sam_sgd(body_learning_rate, rho)``
    on the shared part alone."""
    body = sharpness_aware.sam_sgd(body_learning_rate, rho)
    return dfedalt(loss_fn, head_optimizer, body, name=name, **kwargs)


def dfedpgp(
    loss_fn: local.LossFn,
    head_optimizer: optax.GradientTransformation,
    body_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    head_steps: int,
    body_steps: int,
    gossip_steps: int = 1,
    push: str = "update",
    order: str = "train_then_gossip",
    name: str = "dfedpgp",
    **options: Any,
) -> base.Algorithm:
    """DFedPGP: :func:`dfedalt`'s alternating phases, then push-sum of the shared part
    (module docstring).

    Args:
      head_optimizer, body_optimizer, head_steps, body_steps: as for :func:`dfedalt`.
      gossip_steps: push (or gossip) steps per round.
      push: ``"update"``, ``"model"`` or ``"off"`` (the released code's pull-average).
      order: ``"train_then_gossip"``; ``"gossip_then_train"`` only with ``push`` "model"
        or "off".
      **options: ``labels`` (the partition, default the head) and the settings of the
        client update.
    """
    if push not in PUSH_VARIANTS:
        raise ValueError(f"Unknown push {push!r}; expected one of {PUSH_VARIANTS}.")
    if push == "update" and order != "train_then_gossip":
        raise ValueError(
            f"{name} with push='update' pushes each round's update, which exists only after "
            f"training: use order='train_then_gossip', got {order!r} (or push='model')."
        )
    piece = (
        communication.gossip(gossip_steps)
        if push == "off"
        else communication.push_sum(gossip_steps, push)
    )
    phases = alternating_phases(head_optimizer, body_optimizer, head_steps, body_steps)
    return _gossiped(loss_fn, phases, piece, num_clients, order, name, **options)


def personal_heads(labels: partition.LabelFn | Any) -> client_lib.Persistent:
    """Each client's personal part, kept by the server: the received model's, at first; a
    client starts from the received shared part and its own personal part."""

    def personal(params):
        return partition.select(params, partition.mask(labels, params, partition.PERSONAL))

    def shared(params):
        return partition.select(params, partition.mask(labels, params, partition.SHARED))

    return client_lib.Persistent(
        init=personal,
        optimizer_args=lambda row, start: {},
        update=lambda row, out, context: personal(out.trained),
        start=lambda row, received: partition.merge(shared(received), row),
    )


def _server_personalized(loss_fn, phases, labels, *, num_clients, clients_per_round, name, **kw):
    """The server's mean of the shared parts, every client's head kept by the server."""
    server = rounds.server_rule(kw.pop("server_optimizer", None))
    client = client_lib.client_update(phases, persistent=personal_heads(labels), **kw)
    return rounds.server_round(
        loss_fn,
        name=name,
        num_clients=num_clients,
        client=client,
        cohort=clients_per_round,
        server=server,
        labels=labels,
    )


def fedper(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    labels: partition.LabelFn | Any = partition.head_labels,
    name: str = "fedper",
    **client_options: Any,
) -> base.Algorithm:
    """FedPer: FedAvg of the shared part; each client's head stays its own (see above).

    ``client_options``: ``server_optimizer`` (default ``optax.sgd(1.0)``) and the settings of
    the client update (``step_counts``, ``lr_decay``)."""
    return _server_personalized(
        loss_fn,
        [local.Phase(local_optimizer)],
        labels,
        num_clients=num_clients,
        clients_per_round=clients_per_round,
        name=name,
        **client_options,
    )


def fedrep(
    loss_fn: local.LossFn,
    head_optimizer: optax.GradientTransformation,
    body_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    head_steps: int,
    body_steps: int,
    labels: partition.LabelFn | Any = partition.head_labels,
    name: str = "fedrep",
    **client_options: Any,
) -> base.Algorithm:
    """FedRep: the head trained first (body frozen), then the body; bodies averaged.

    ``client_options``: as for :func:`fedper`."""
    return _server_personalized(
        loss_fn,
        alternating_phases(head_optimizer, body_optimizer, head_steps, body_steps),
        labels,
        num_clients=num_clients,
        clients_per_round=clients_per_round,
        name=name,
        **client_options,
    )
