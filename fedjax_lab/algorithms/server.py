"""Server-based algorithms: FedAvg and FedSAM.

Each round the server samples a cohort of ``m`` of the ``N`` clients uniformly without
replacement. Every sampled client starts from the global model ``x``, runs K local steps of
its optimizer, and reports ``delta_i = y_i - x``; the server applies the mean update

.. math::

  x \\leftarrow x + \\eta_g \\, \\frac{1}{m} \\sum_{i \\in S} \\Delta_i

(``server_optimizer=optax.sgd(eta_g)``; any optax transformation of the pseudo-gradient
``-mean(delta)`` works: ``optax.adam`` is FedAdam). FedSAM is FedAvg whose local optimizer
is ``chain(sam(rho), sgd(lr))``. FedSpeed adds a per-client correction kept across rounds
(:func:`fedspeed`). All are compositions of :func:`fedjax_lab.algorithms.rounds.compose`.

References:
  McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized
  Data", AISTATS 2017. Qu et al., "Generalized Federated Learning via Sharpness Aware
  Minimization", ICML 2022 (FedSAM). Reddi et al., "Adaptive Federated Optimization",
  ICLR 2021 (server optimizers). Sun et al., "FedSpeed: Larger Local Interval, Less
  Communication Round, and Higher Generalization Accuracy", ICLR 2023.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from fedjax_lab import clients
from fedjax_lab import config as config_lib
from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import communication
from fedjax_lab.algorithms import configured
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
    name: str = "fedavg",
    **kwargs: Any,
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
      name: the algorithm's name in metrics and logs.
      **kwargs: the other pieces and settings of :func:`~fedjax_lab.algorithms.rounds.compose`
        (``update_transform``, ``step_counts``, ``lr_decay``, ``strategy``, ``chunk_size``,
        ``unroll``, ...).

    Returns:
      An :class:`~fedjax_lab.algorithms.base.Algorithm`; ``round`` expects ``mixing=None``.
    """
    if server_optimizer is None:
        if not server_learning_rate > 0:
            raise ValueError(f"Expected server_learning_rate > 0, got {server_learning_rate!r}.")
        server_optimizer = optax.sgd(server_learning_rate)
    return rounds.compose(
        loss_fn,
        name=name,
        num_clients=num_clients,
        cohort=clients_per_round,
        phases=[local.Phase(local_optimizer, steps=steps, gradient=gradient)],
        communication=communication.server_mean(),
        server_optimizer=server_optimizer,
        **kwargs,
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


def correction_mean() -> optax.GradientTransformationExtraArgs:
    """Server piece: subtracts ``mean_i h_i`` (the extra argument ``client_state``) from the
    pseudo-gradient, so that ``sgd(1)`` after it adds the mean correction to the model."""

    def update_fn(updates, state, params=None, *, client_state, **extra_args):
        del params, extra_args
        mean = clients.client_mean(client_state)
        return jax.tree.map(lambda g, h: g - h.astype(g.dtype), updates, mean), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def corrections() -> rounds.Persistent:
    """The per-client correction ``h_i``: zeros, anchor ``x - h_i``, ``h_i += delta_i``."""
    return rounds.Persistent(
        init=lambda params: jax.tree.map(jnp.zeros_like, params),
        optimizer_args=lambda h, start: {"anchor": jax.tree.map(jnp.subtract, start, h)},
        update=lambda h, start, trained, delta: jax.tree.map(jnp.add, h, delta),
    )


def fedspeed(
    loss_fn: local.LossFn,
    *,
    learning_rate: float,
    rho: float = 0.1,
    prox_strength: float = 0.1,
    adaptive: bool = False,
    num_clients: int,
    clients_per_round: int,
    server_optimizer: optax.GradientTransformation | None = None,
    name: str = "fedspeed",
    **kwargs: Any,
) -> base.Algorithm:
    """FedSpeed: FedSAM with a per-client prox-correction kept across rounds.

    Client ``i`` keeps a correction ``h_i`` (zero at the start), held by the server for every
    client, sampled or not. A sampled client starts from the global model ``x``; each local step
    takes the SAM gradient ``g'`` and adds a pull toward ``x - h_i``:

    .. math::

      y \\leftarrow y - \\eta \\big(g'(y) + \\lambda (y - x + h_i)\\big), \\qquad
      \\Delta_i = y_K - x, \\qquad h_i \\leftarrow h_i + \\Delta_i,

    and the server sets ``x <- mean_{i in S} y_i + mean_{i=1..N} h_i`` (the mean of the
    corrections over all N clients, this round's included). As pieces: the local optimizer is
    ``chain(sam(rho), proximal(lambda), sgd(eta))`` with ``anchor = x - h_i`` passed per client,
    ``h`` is :class:`~fedjax_lab.algorithms.rounds.Persistent` state, and the server update is
    ``chain(correction, sgd(1))``, where the correction subtracts ``mean_i h_i`` from the
    pseudo-gradient ``x - mean_{i in S} y_i``.

    Defaults follow the released FL-Simulator code: ``lambda = 0.1``, ``rho = 0.1``, SGD
    without momentum. (The released code also uses weight decay 1e-3 and clips gradients at
    norm 10; neither is applied here.)

    Args:
      loss_fn: ``(params, batch) -> scalar`` for one client.
      learning_rate: local SGD step size.
      rho: SAM radius.
      prox_strength: lambda, the pull toward ``x - h_i``.
      adaptive: ASAM instead of SAM.
      num_clients, clients_per_round: N and m.
      server_optimizer: applied after the correction; default ``optax.sgd(1.0)`` (the
        paper's rule).
      **kwargs: other arguments of :func:`~fedjax_lab.algorithms.server.fedavg`.
    """
    local_optimizer = optax.chain(
        sam(rho, adaptive=adaptive), proximal(prox_strength), optax.sgd(learning_rate)
    )
    return fedavg(
        loss_fn,
        local_optimizer,
        num_clients=num_clients,
        clients_per_round=clients_per_round,
        server_optimizer=optax.chain(correction_mean(), server_optimizer or optax.sgd(1.0)),
        persistent=corrections(),
        name=name,
        **kwargs,
    )


def _build_fedspeed(c, loss_fn):
    kwargs = configured.server_kwargs(c)
    return fedspeed(
        loss_fn,
        learning_rate=c.local.learning_rate,
        rho=c.sam.rho,
        prox_strength=c.fedspeed.prox_strength,
        adaptive=c.sam.adaptive,
        **kwargs,
    )


FEDSPEED = base.AlgorithmSpec(
    name="fedspeed",
    summary="server; SAM + prox-correction h_i kept per client across rounds",
    build=_build_fedspeed,
    fields=(config_lib.Field("fedspeed.prox_strength", 0.1, "lambda, the pull toward x - h_i"),),
    defaults={"sam.rho": 0.1},
)

FEDAVG = base.AlgorithmSpec(
    name="fedavg",
    summary="server, m of N clients per round; local SGD; mean of client updates",
    build=lambda c, f: fedavg(
        f, configured.local_sgd(c), name="fedavg", **configured.server_kwargs(c)
    ),
)
FEDSAM = base.AlgorithmSpec(
    name="fedsam",
    summary="server; local SAM + SGD; mean of client updates",
    build=lambda c, f: fedavg(
        f, configured.local_sam_sgd(c), name="fedsam", **configured.server_kwargs(c)
    ),
)
