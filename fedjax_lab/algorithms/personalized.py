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
(sampled or not, :class:`~fedjax_lab.algorithms.rounds.Persistent` rows) and averages the
bodies of the cohort:

* :func:`fedper`: a client trains body and head together from ``(u, v_i)``;
* :func:`fedrep`: a client trains its head first with the body frozen, then the body.

On directed graphs, :func:`dfedpgp` runs the same phases and then pushes the shared part
with push-sum (:func:`~fedjax_lab.algorithms.communication.push_sum`) over a
column-stochastic ``P``, training from the de-biased ``u_i / w_i``.

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

import dataclasses
from typing import Any

import optax

from fedjax_lab import config as config_lib
from fedjax_lab import local
from fedjax_lab import partition
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import communication
from fedjax_lab.algorithms import configured
from fedjax_lab.algorithms import rounds
from fedjax_lab.transforms import sharpness_aware

PUSH_VARIANTS = communication.PUSHES + ("off",)  # dfedpgp's; "off" = plain gossip


def _alternating(head_optimizer, body_optimizer, head_steps, body_steps):
    head_steps = base.check_positive_int("head_steps", head_steps)
    body_steps = base.check_positive_int("body_steps", body_steps)
    return [
        local.Phase(head_optimizer, head_steps, trains=partition.PERSONAL),
        local.Phase(body_optimizer, body_steps, trains=partition.SHARED),
    ]


def _composed(loss_fn: local.LossFn, labels: Any, **compose_kwargs: Any) -> base.Algorithm:
    """``rounds.compose`` with the partition ``labels``, whose ``init`` rejects a partition
    with an empty shared or personal part."""
    alg = rounds.compose(loss_fn, labels=labels, **compose_kwargs)
    init = alg.init

    def checked_init(params):
        partition.check_both_parts(labels, params)
        return init(params)

    return dataclasses.replace(alg, init=checked_init)


def dfedalt(
    loss_fn: local.LossFn,
    head_optimizer: optax.GradientTransformation,
    body_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    head_steps: int,
    body_steps: int,
    labels: partition.LabelFn | Any = partition.head_labels,
    gossip_steps: int = 1,
    order: str = "gossip_then_train",
    name: str = "dfedalt",
    **kwargs: Any,
) -> base.Algorithm:
    """DFedAlt with any head and body optimizers (see the module docstring).

    Args:
      head_optimizer, body_optimizer: the two phases' optax transformations.
      head_steps, body_steps: K_v and K_u; a round consumes ``K_v + K_u`` batches.
      labels: the partition; its ``"shared"`` part is gossiped.
      gossip_steps, order: Q and the update order (the papers gossip first).
      **kwargs: other arguments of :func:`~fedjax_lab.algorithms.rounds.compose`.
    """
    return _composed(
        loss_fn,
        labels,
        name=name,
        num_clients=num_clients,
        phases=_alternating(head_optimizer, body_optimizer, head_steps, body_steps),
        communication=communication.gossip(gossip_steps),
        order=order,
        **kwargs,
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
    labels: partition.LabelFn | Any = partition.head_labels,
    gossip_steps: int = 1,
    push: str = "update",
    order: str = "train_then_gossip",
    name: str = "dfedpgp",
    **kwargs: Any,
) -> base.Algorithm:
    """DFedPGP: :func:`dfedalt`'s alternating phases, then push-sum of the shared part.

    Per round, client ``i`` trains from its de-biased ``z_i = x_i / w_i``: the head ``v_i``
    for ``K_v`` steps (body frozen), then the body for ``K_u`` steps (head frozen), which
    moves its shared part by ``delta_i``; then it pushes
    (:func:`~fedjax_lab.algorithms.communication.push_sum`) over the round's
    column-stochastic ``P``:

    .. math::

      x_i \\leftarrow \\textstyle\\sum_j P_{ij} (w_j z_j + \\delta_j), \\qquad
      w_i \\leftarrow \\textstyle\\sum_j P_{ij} w_j, \\qquad z_i = x_i / w_i.

    What is pushed: the update (``push="update"``, the default), as the paper's analysis
    does (a gradient push): each client's update enters the network's average with weight
    ``1/N`` whatever its push-sum weight, so the average follows the mean update of the
    clients. ``push="model"`` pushes ``w_i`` times the trained model instead, which weighs
    client ``i``'s update by ``w_i``. The update exists only after training, so the order
    is train, then push.

    ``push="off"`` is the released code's variant: plain gossip (pull-averaging over the
    round's in-neighbours, a row-stochastic ``W`` such as ``random_in_neighbours`` with
    ``k = 10``), no push-sum weights.

    Args:
      head_optimizer, body_optimizer, head_steps, body_steps, labels: as for
        :func:`dfedalt`.
      gossip_steps: push (or gossip) steps per round.
      push: ``"update"``, ``"model"`` or ``"off"`` (see above).
      order: ``"train_then_gossip"``; ``"gossip_then_train"`` only with ``push`` "model"
        or "off".
      **kwargs: other arguments of :func:`~fedjax_lab.algorithms.rounds.compose`.
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
    return _composed(
        loss_fn,
        labels,
        name=name,
        num_clients=num_clients,
        phases=_alternating(head_optimizer, body_optimizer, head_steps, body_steps),
        communication=piece,
        order=order,
        **kwargs,
    )


def personal_heads(labels: partition.LabelFn | Any) -> rounds.Persistent:
    """Each client's personal part, kept by the server: the received model's, at first; a
    client starts from the received shared part and its own personal part."""

    def personal(params):
        return partition.select(params, partition.mask(labels, params, partition.PERSONAL))

    def shared(params):
        return partition.select(params, partition.mask(labels, params, partition.SHARED))

    return rounds.Persistent(
        init=personal,
        optimizer_args=lambda row, start: {},
        update=lambda row, start, trained, sent: personal(trained),
        start=lambda row, received: partition.merge(shared(received), row),
    )


def _server_personalized(loss_fn, phases, labels, *, clients_per_round, **kw):
    """The server's mean of the shared parts, every client's head kept by the server."""
    return _composed(
        loss_fn,
        labels,
        phases=phases,
        cohort=clients_per_round,
        communication=communication.server_mean(),
        persistent=personal_heads(labels),
        **kw,
    )


def fedper(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    labels: partition.LabelFn | Any = partition.head_labels,
    name: str = "fedper",
    **kwargs: Any,
) -> base.Algorithm:
    """FedPer: FedAvg of the shared part; each client's head stays its own (see above)."""
    return _server_personalized(
        loss_fn,
        [local.Phase(local_optimizer)],
        labels,
        num_clients=num_clients,
        clients_per_round=clients_per_round,
        name=name,
        **kwargs,
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
    **kwargs: Any,
) -> base.Algorithm:
    """FedRep: the head trained first (body frozen), then the body; bodies averaged."""
    return _server_personalized(
        loss_fn,
        _alternating(head_optimizer, body_optimizer, head_steps, body_steps),
        labels,
        num_clients=num_clients,
        clients_per_round=clients_per_round,
        name=name,
        **kwargs,
    )


FIELDS = (
    config_lib.Field(
        "personal.layers", "head", "the personal top-level layers, comma-separated ('head')"
    ),
    config_lib.Field("personal.head_steps", 5, "K_v: steps on the personal part per round"),
    config_lib.Field("personal.body_steps", 5, "K_u: steps on the shared part per round"),
    config_lib.Field("personal.head_learning_rate", 0.1, "step size of the personal phase"),
    config_lib.Field("personal.body_learning_rate", 0.1, "step size of the shared phase"),
)
PUSH_FIELD = config_lib.Field(
    "personal.push",
    "update",
    "push-sum of the update or of the model, or off (the released code's pull-average over "
    "a row-stochastic topology)",
)


def _labels(c):
    names = [n.strip() for n in c.personal.layers.split(",") if n.strip()]
    return partition.personal_layers(names)


def _phase_optimizers(c):
    for key in ("head_learning_rate", "body_learning_rate"):
        if not c.personal[key] > 0:
            raise ValueError(f"Expected personal.{key} > 0, got {c.personal[key]!r}.")
    return optax.sgd(c.personal.head_learning_rate), optax.sgd(c.personal.body_learning_rate)


def _steps(c):
    return {"head_steps": c.personal.head_steps, "body_steps": c.personal.body_steps}


def _build_dfedalt(c, loss_fn):
    head, body = _phase_optimizers(c)
    return dfedalt(
        loss_fn, head, body, labels=_labels(c), **_steps(c), **configured.decentralized_kwargs(c)
    )


def _build_dfedsalt(c, loss_fn):
    head, _ = _phase_optimizers(c)
    return dfedsalt(
        loss_fn,
        head,
        body_learning_rate=c.personal.body_learning_rate,
        rho=c.sam.rho,
        labels=_labels(c),
        **_steps(c),
        **configured.decentralized_kwargs(c),
    )


def _build_dfedpgp(c, loss_fn):
    head, body = _phase_optimizers(c)
    return dfedpgp(
        loss_fn,
        head,
        body,
        labels=_labels(c),
        push=c.personal.push,
        **_steps(c),
        **configured.decentralized_kwargs(c),
    )


def _build_fedper(c, loss_fn):
    return fedper(
        loss_fn, configured.local_sgd(c), labels=_labels(c), **configured.server_kwargs(c)
    )


def _build_fedrep(c, loss_fn):
    head, body = _phase_optimizers(c)
    return fedrep(
        loss_fn, head, body, labels=_labels(c), **_steps(c), **configured.server_kwargs(c)
    )


_DECENTRALIZED_DEFAULTS = {"communication.order": "gossip_then_train"}
DFEDALT = base.AlgorithmSpec(
    name="dfedalt",
    summary="decentralized; the shared part gossiped, then head then body trained",
    build=_build_dfedalt,
    fields=FIELDS,
    defaults=_DECENTRALIZED_DEFAULTS,
)
DFEDSALT = base.AlgorithmSpec(
    name="dfedsalt",
    summary="dfedalt with SAM on the shared part in the body phase",
    build=_build_dfedsalt,
    fields=FIELDS,
    defaults=_DECENTRALIZED_DEFAULTS,
)
DFEDPGP = base.AlgorithmSpec(
    name="dfedpgp",
    summary="dfedalt's phases with push-sum of the shared part over directed graphs",
    build=_build_dfedpgp,
    fields=FIELDS + (PUSH_FIELD,),
    defaults={"communication.topology": "random_out_neighbours"},
)
FEDPER = base.AlgorithmSpec(
    name="fedper",
    summary="server; bodies averaged, every client's head kept by the server",
    build=_build_fedper,
    fields=FIELDS,
)
FEDREP = base.AlgorithmSpec(
    name="fedrep",
    summary="fedper training the head first (body frozen), then the body",
    build=_build_fedrep,
    fields=FIELDS,
)
