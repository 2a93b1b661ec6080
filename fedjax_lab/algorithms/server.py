"""Server-based algorithms: FedAvg and FedSAM.

Each round the server samples a cohort of ``m`` of the ``N`` clients uniformly without
replacement. Every sampled client starts from the global model ``x``, runs K local steps of
its optimizer, and reports ``delta_i = y_i - x``; the server applies the mean update

.. math::

  x \\leftarrow x + \\eta_g \\, \\frac{1}{m} \\sum_{i \\in S} \\Delta_i

(``server_optimizer=optax.sgd(eta_g)``; any optax transformation of the pseudo-gradient
``-mean(delta)`` works: ``optax.adam`` is FedAdam). FedSAM is FedAvg whose local optimizer
is ``chain(sam(rho), sgd(lr))``. FedSpeed adds a per-client correction kept across rounds
(:func:`fedspeed`). All are :func:`~fedjax_lab.algorithms.rounds.server_round` s.

**FedSpeed.** Client ``i`` keeps a correction ``h_i`` (zero at the start), held by the
server for every client, sampled or not. A sampled client starts from the global model
``x``; each local step takes the SAM gradient ``g'`` and adds a pull toward ``x - h_i``:

.. math::

  y \\leftarrow y - \\eta \\big(g'(y) + \\lambda (y - x + h_i)\\big), \\qquad
  \\Delta_i = y_K - x, \\qquad h_i \\leftarrow h_i + \\Delta_i,

and the server sets ``x <- mean_{i in S} y_i + mean_{i=1..N} h_i`` (the mean of the
corrections over all N clients, this round's included). As pieces: the local optimizer is
``chain(sam(rho), proximal(lambda), [add_decayed_weights(wd),] sgd(eta))`` with
``anchor = x - h_i`` passed per client, ``h`` is
:class:`~fedjax_lab.algorithms.client.Persistent` state, and the server rule is
``chain(correction, sgd(1))``, where the correction subtracts ``mean_i h_i`` from the
pseudo-gradient ``x - mean_{i in S} y_i``.

Defaults follow the released FL-Simulator code: ``lambda = 0.1``, ``rho = 0.1``, SGD
without momentum; its weight decay (1e-3) is ``weight_decay``, added to the step's
gradient after the pull. (Its gradient clipping at norm 10 is not applied.)

References:
  McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized
  Data", AISTATS 2017. Qu et al., "Generalized Federated Learning via Sharpness Aware
  Minimization", ICML 2022 (FedSAM). Reddi et al., "Adaptive Federated Optimization",
  ICLR 2021 (server optimizers). Sun et al., "FedSpeed: Larger Local Interval, Less
  Communication Round, and Higher Generalization Accuracy", ICLR 2023.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_lab import clients
from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import client as client_lib
from fedjax_lab.algorithms import communication as comm_lib
from fedjax_lab.algorithms import rounds
from fedjax_lab.transforms import proximal
from fedjax_lab.transforms import sam
from fedjax_lab.transforms import sharpness_aware


def fedavg(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    server_learning_rate: float = 1.0,
    server_optimizer: optax.GradientTransformation | None = None,
    gradient: gradients.GradientFn | None = gradients.batch_gradient,
    steps: int | None = None,
    communication: comm_lib.Communication | None = None,
    name: str = "fedavg",
    **client_options: Any,
) -> base.Algorithm:
    """FedAvg with any local optimizer.

    Args:
      loss_fn: ``(params, batch) -> scalar`` for one client.
      local_optimizer: the clients' optax transformation (state reset every round).
      num_clients: N.
      clients_per_round: m, sampled uniformly without replacement each round.
      server_learning_rate: eta_g of the default server update ``optax.sgd(eta_g)``.
      server_optimizer: another server update (then ``server_learning_rate`` is unused).
      gradient: the local steps' gradient hook (:mod:`fedjax_lab.gradients`), or None for
        none (zeroth-order optimizers).
      steps: the local steps per round, or None for as many as the round's batches.
      communication: a server piece; default
        :func:`~fedjax_lab.algorithms.communication.server_mean` (dense models).
      name: the algorithm's name in metrics and logs.
      **client_options: the other settings of the client update
        (:func:`~fedjax_lab.algorithms.client.client_update`: ``transform``,
        ``step_counts``, ``lr_decay``).

    Returns:
      An :class:`~fedjax_lab.algorithms.base.Algorithm`; ``round`` expects ``mixing=None``.
    """
    if server_optimizer is None:
        if not server_learning_rate > 0:
            raise ValueError(f"Expected server_learning_rate > 0, got {server_learning_rate!r}.")
        server_optimizer = optax.sgd(server_learning_rate)
    phase = local.Phase(local_optimizer, steps=steps, gradient=gradient)
    return rounds.server_round(
        loss_fn,
        name=name,
        num_clients=num_clients,
        client=client_lib.client_update(phase, **client_options),
        cohort=clients_per_round,
        communication=communication,
        server=rounds.server_rule(server_optimizer),
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
    optimizer = sharpness_aware.sam_sgd(learning_rate, rho, momentum=momentum, adaptive=adaptive)
    return fedavg(loss_fn, optimizer, name=kwargs.pop("name", "fedsam"), **kwargs)


def correction_mean(scale: float = 1.0) -> optax.GradientTransformationExtraArgs:
    """Server piece: subtracts ``scale * mean_i h_i`` (``h`` the extra argument
    ``client_state``, the mean over all N clients) from the pseudo-gradient, so that
    ``sgd(1)`` after it adds ``scale`` times the mean correction to the model."""

    def update_fn(updates, state, params=None, *, client_state, **extra_args):
        del params, extra_args
        mean = clients.client_mean(client_state)
        return jax.tree.map(lambda g, h: g - scale * h.astype(g.dtype), updates, mean), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


class PopulationMean(NamedTuple):
    """The mean over all N clients of their persistent state, after the last round."""

    mean: Any


def population_mean() -> optax.GradientTransformationExtraArgs:
    """Server piece: keeps ``mean_i r_i`` of every client's persistent row (the extra
    argument ``client_state``) in its state, zeros like the model at first, and passes the
    pseudo-gradient through. A server rule can broadcast it (SCAFFOLD's control variate
    ``c = (1/N) sum_i c_i``)."""

    def init_fn(params):
        return PopulationMean(jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None, *, client_state, **extra_args):
        del state, params, extra_args
        return updates, PopulationMean(clients.client_mean(client_state))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def corrections() -> client_lib.Persistent:
    """The per-client correction ``h_i``: zeros, anchor ``x - h_i``, ``h_i += delta_i``."""
    return client_lib.Persistent(
        init=lambda params: jax.tree.map(jnp.zeros_like, params),
        optimizer_args=lambda h, start: {"anchor": jax.tree.map(jnp.subtract, start, h)},
        update=lambda h, out, context: jax.tree.map(jnp.add, h, out.update),
    )


def fedspeed(
    loss_fn: local.LossFn,
    *,
    learning_rate: float,
    rho: float = 0.1,
    prox_strength: float = 0.1,
    adaptive: bool = False,
    weight_decay: float = 0.0,
    num_clients: int,
    clients_per_round: int,
    server_optimizer: optax.GradientTransformation | None = None,
    name: str = "fedspeed",
    **client_options: Any,
) -> base.Algorithm:
    """FedSpeed: FedSAM with a per-client prox-correction kept across rounds (module
    docstring).

    Args:
      loss_fn: ``(params, batch) -> scalar`` for one client.
      learning_rate: local SGD step size.
      rho: SAM radius.
      prox_strength: lambda, the pull toward ``x - h_i``.
      adaptive: ASAM instead of SAM.
      weight_decay: L2 weight decay of the local steps.
      num_clients, clients_per_round: N and m.
      server_optimizer: applied after the correction; default ``optax.sgd(1.0)`` (the
        paper's rule).
      **client_options: the other settings of the client update (``step_counts``,
        ``lr_decay``).
    """
    if not weight_decay >= 0:
        raise ValueError(f"Expected weight_decay >= 0, got {weight_decay!r}.")
    decay = [optax.add_decayed_weights(weight_decay)] if weight_decay > 0 else []
    local_optimizer = optax.chain(
        sam(rho, adaptive=adaptive), proximal(prox_strength), *decay, optax.sgd(learning_rate)
    )
    client = client_lib.client_update(
        local.Phase(local_optimizer), persistent=corrections(), **client_options
    )
    server = optax.chain(correction_mean(), server_optimizer or optax.sgd(1.0))
    return rounds.server_round(
        loss_fn,
        name=name,
        num_clients=num_clients,
        client=client,
        cohort=clients_per_round,
        server=rounds.server_rule(server),
    )
