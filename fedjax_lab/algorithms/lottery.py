"""Fed-LTP: federated lottery-ticket pruning with instance-level DP-SGD, accounted in zCDP.

Per round, with ``M`` the server's mask (1 kept, 0 pruned) and ``x`` the global model
(``x = x * M``):

.. math::

  \\text{client } i: \\; y \\leftarrow y - \\eta \\, M \\odot \\Big(\\frac{1}{B}
    \\sum_b \\mathrm{clip}_C(\\nabla \\ell(y; x_b)) + \\mathcal{N}\\big(0, (\\sigma C / B)^2\\big)\\Big)
    \\quad (K \\text{ steps from } x), \\qquad
  x \\leftarrow M \\odot \\tfrac{1}{m} \\textstyle\\sum_{i \\in S} y_i ,

and on the schedule's pruning rounds the server cuts the smallest-magnitude prunable
weights to the next sparsity, keeping the step only if a Laplace-noised validation score
allows it (:mod:`fedjax_lab.transforms.pruning`). The mask is broadcast with the model, so
clients train sparse to sparse: pruned weights are exactly zero all through. Each client
sends the nonzero coordinates of its model (``coordinates_sent``, value and index).

Privacy (instance level, zCDP). A DP-SGD step is a Gaussian mechanism with sensitivity
``C`` and std ``sigma C``: ``1 / (2 sigma^2)``-zCDP. Composition adds, so a round costs at
most ``K / (2 sigma^2)`` for any example (its client may take part every round; the
cohort and batch sampling are not credited, the conservative choice where ALGORITHMS.md
leaves the subsampling treatment open), and each validation ``eps_v^2 / 2``. The run
reports ``epsilon = rho + 2 sqrt(rho ln(1 / delta))`` after every round, and
``dp.target_epsilon`` stops it before the round that would exceed the budget.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optax

from fedjax_lab import config as config_lib
from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab import privacy
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import communication
from fedjax_lab.algorithms import configured
from fedjax_lab.algorithms import private
from fedjax_lab.algorithms import rounds
from fedjax_lab.transforms import pruning


def zcdp_hook(
    rho_per_round: float,
    schedule: pruning.PruningSchedule,
    validation: pruning.LaplaceValidation | None,
    delta: float,
    target_epsilon: float | None = None,
) -> base.HostHook:
    """A host hook composing zCDP over rounds: ``rho_per_round`` every round, plus the
    validation's ``eps_v^2 / 2`` in the rounds that report ``validated``; it reports
    ``epsilon`` at ``delta`` and stops before a round that could exceed ``target_epsilon``."""
    delta = privacy.accounting.check_delta(delta)
    validation_rho = validation.rho if validation is not None else 0.0

    def worst_case(rho: float, round_index: int) -> float:
        prunes = round_index % schedule.every == 0
        return privacy.zcdp_epsilon(rho + rho_per_round + validation_rho * prunes, delta)

    if target_epsilon is not None:
        private.check_budget(target_epsilon, worst_case(0.0, 1))

    def after_round(state, round_index, metrics):
        rho = float(state["rho"]) + rho_per_round + validation_rho * metrics["validated"]
        state = {"rho": np.asarray(rho, np.float64)}
        return state, {"epsilon": privacy.zcdp_epsilon(rho, delta), "rho": rho}

    def stop_before(state, round_index):
        after = worst_case(float(state["rho"]), round_index)  # as if it validates
        return private.budget_stop(target_epsilon, round_index, after, verb="could")

    return base.HostHook(
        lambda: {"rho": np.zeros((), np.float64)},
        after_round,
        stop_before if target_epsilon is not None else None,
    )


def fed_ltp(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    local_steps: int,
    clip_norm: float,
    noise_multiplier: float,
    delta: float,
    schedule: pruning.PruningSchedule,
    validation: pruning.LaplaceValidation | None = None,
    target_epsilon: float | None = None,
    server_optimizer: optax.GradientTransformation | None = None,
    name: str = "fed_ltp",
    **kwargs: Any,
) -> base.Algorithm:
    """Fed-LTP (see the module docstring).

    Args:
      local_optimizer: the clients' optax transformation; its update is masked
        (``chain(local_optimizer, apply_mask())``), so pruned weights stay zero.
      clients_per_round: m, sampled without replacement.
      local_steps: K, DP-SGD steps per round (the accounting counts them).
      clip_norm, noise_multiplier: C and sigma of every DP-SGD step (per-example clipping).
      delta: delta of the reported epsilon.
      schedule: the pruning schedule; ``validation``: its Laplace acceptance test, or None.
      target_epsilon: stop before a round that could exceed it, or None.
      server_optimizer: the server update of the mean client update, before the pruning;
        default ``optax.sgd(1.0)``, ``x <- mean_i y_i``.
      **kwargs: other arguments of :func:`~fedjax_lab.algorithms.rounds.compose`.
    """
    local_steps = base.check_positive_int("local_steps", local_steps)
    if not noise_multiplier >= 0:
        raise ValueError(f"Expected a noise multiplier sigma >= 0, got {noise_multiplier!r}.")
    if not clip_norm > 0:
        raise ValueError(f"Expected a clip norm C > 0, got {clip_norm!r}.")
    rho = (  # sigma = 0 (no noise, for testing) has no privacy: epsilon is inf
        local_steps * privacy.zcdp_gaussian(clip_norm, noise_multiplier * clip_norm)
        if noise_multiplier > 0
        else math.inf
    )
    return rounds.compose(
        loss_fn,
        name=name,
        num_clients=num_clients,
        phases=[
            local.Phase(
                optax.chain(local_optimizer, pruning.apply_mask()),
                steps=local_steps,
                gradient=gradients.per_example_clipped_gradient(clip_norm, noise_multiplier),
            )
        ],
        cohort=clients_per_round,
        communication=communication.server_mean(),
        server_optimizer=optax.chain(
            server_optimizer or optax.sgd(1.0),
            pruning.magnitude_pruning(schedule, validation=validation),
        ),
        client_args=lambda server: {"mask": _pruning_state(server).mask},
        server_metrics=_pruning_metrics,
        sparse_messages=True,
        host_hook=zcdp_hook(rho, schedule, validation, delta, target_epsilon),
        **kwargs,
    )


def _pruning_state(server_state: Any) -> pruning.PruningState:
    return server_state[1]  # chain(sgd, magnitude_pruning)


def _pruning_metrics(server_state: Any) -> dict[str, Any]:
    state = _pruning_state(server_state)
    return {
        "sparsity": pruning.sparsity(state.mask, pruning.prunable(state.mask)),
        "validated": state.validated,
    }


FIELDS = (
    config_lib.Field("dp.clip_norm", 1.0, "C, the L2 bound of each example's gradient (DP-SGD)"),
    config_lib.Field("dp.noise_multiplier", 1.0, "sigma: each DP-SGD step adds std sigma C / B"),
    config_lib.Field("dp.delta", 1e-5, "delta of the reported epsilon (zCDP converted)"),
    config_lib.Field(
        "dp.target_epsilon", None, "stop before a round could exceed it; None = no budget", float
    ),
    config_lib.Field("ltp.target_sparsity", 0.8, "fraction of prunable weights finally pruned"),
    config_lib.Field("ltp.prune_rate", 0.2, "fraction of the remaining weights cut per step"),
    config_lib.Field("ltp.prune_every", 5, "rounds between pruning steps"),
    config_lib.Field(
        "ltp.validation_epsilon", 1.0, "eps_v of each Laplace-noised validation; 0 = none"
    ),
    config_lib.Field("ltp.validation_loss_bound", 5.0, "B: per-example losses clipped to [0, B]"),
    config_lib.Field(
        "ltp.validation_tolerance", 0.05, "accept a pruning step raising the loss at most this"
    ),
)


def _build(c, loss_fn):
    schedule = pruning.PruningSchedule(
        c.ltp.target_sparsity, c.ltp.prune_rate, c.ltp.prune_every
    ).check()
    if c.ltp.validation_epsilon < 0:
        raise ValueError(
            f"Expected ltp.validation_epsilon >= 0 (0 = no validation), got "
            f"{c.ltp.validation_epsilon!r}."
        )
    validation = None
    if c.ltp.validation_epsilon > 0:
        validation = pruning.LaplaceValidation(
            c.ltp.validation_epsilon, c.ltp.validation_loss_bound, c.ltp.validation_tolerance
        )
    return fed_ltp(
        loss_fn,
        configured.local_sgd(c),
        num_clients=c.num_clients,
        clients_per_round=c.server.clients_per_round,
        local_steps=c.local.steps,
        clip_norm=c.dp.clip_norm,
        noise_multiplier=c.dp.noise_multiplier,
        delta=c.dp.delta,
        schedule=schedule,
        validation=validation,
        target_epsilon=c.dp.target_epsilon,
        server_optimizer=configured.server_optimizer(c),
        lr_decay=c.local.lr_decay,
        **configured.execution_kwargs(c),
    )


FED_LTP = base.AlgorithmSpec(
    name="fed_ltp",
    summary="server; magnitude pruning broadcast as a mask; clients train sparse with DP-SGD; zCDP",
    build=_build,
    fields=FIELDS,
)
