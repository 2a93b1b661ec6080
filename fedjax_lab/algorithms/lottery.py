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
from typing import Any, NamedTuple

import numpy as np
import optax

from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab import privacy
from fedjax_lab import validation
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import client as client_lib
from fedjax_lab.algorithms import communication
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


class Pruning(NamedTuple):
    """Fed-LTP's pruning: its schedule and its Laplace acceptance test (or None)."""

    schedule: pruning.PruningSchedule
    validation: pruning.LaplaceValidation | None = None


def fed_ltp(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    local_steps: int,
    settings: private.DPSettings,
    prune: Pruning,
    server_optimizer: optax.GradientTransformation | None = None,
    name: str = "fed_ltp",
    **client_options: Any,
) -> base.Algorithm:
    """Fed-LTP (see the module docstring).

    Args:
      local_optimizer: the clients' optimizer, masked (``chain(opt, apply_mask())``).
      clients_per_round: m, sampled without replacement.
      local_steps: K, DP-SGD steps per round (the accounting counts them).
      settings: C, sigma, delta and the budget of the DP-SGD steps (per-example clipping;
        :class:`~fedjax_lab.algorithms.private.DPSettings`, its accountant unused).
      prune: the pruning schedule and its validation (:class:`Pruning`).
      server_optimizer: the server update before the pruning (default ``sgd(1.0)``).
      **client_options: the other settings of the client update (``lr_decay``, ...).
    """
    local_steps = validation.check_positive_int("local_steps", local_steps)
    rho = _round_rho(local_steps, settings.clip_norm, settings.noise_multiplier)
    phase = local.Phase(
        optax.chain(local_optimizer, pruning.apply_mask()),
        steps=local_steps,
        gradient=gradients.per_example_clipped_gradient(
            settings.clip_norm, settings.noise_multiplier
        ),
    )
    server = optax.chain(
        server_optimizer or optax.sgd(1.0),
        pruning.magnitude_pruning(prune.schedule, validation=prune.validation),
    )
    hook = zcdp_hook(
        rho, prune.schedule, prune.validation, settings.delta, settings.target_epsilon
    )
    return rounds.server_round(
        loss_fn,
        name=name,
        num_clients=num_clients,
        client=client_lib.client_update(phase, **client_options),
        cohort=clients_per_round,
        communication=communication.sparse(communication.server_mean()),
        server=rounds.server_rule(
            server,
            broadcast=lambda state: {"mask": _pruning_state(state).mask},
            report=_pruning_metrics,
            validates=prune.validation is not None,
        ),
        host_hook=hook,
    )


def _round_rho(local_steps: int, clip_norm: float, noise_multiplier: float) -> float:
    """zCDP of a round's ``K`` DP-SGD steps: ``K / (2 sigma^2)`` (inf without noise)."""
    if not noise_multiplier >= 0:
        raise ValueError(f"Expected a noise multiplier sigma >= 0, got {noise_multiplier!r}.")
    if not clip_norm > 0:
        raise ValueError(f"Expected a clip norm C > 0, got {clip_norm!r}.")
    if noise_multiplier == 0:  # no noise (for testing): no privacy, epsilon is inf
        return math.inf
    return local_steps * privacy.zcdp_gaussian(clip_norm, noise_multiplier * clip_norm)


def _pruning_state(server_state: Any) -> pruning.PruningState:
    return server_state[1]  # chain(sgd, magnitude_pruning)


def _pruning_metrics(server_state: Any) -> dict[str, Any]:
    state = _pruning_state(server_state)
    return {
        "sparsity": pruning.sparsity(state.mask, pruning.prunable(state.mask)),
        "validated": state.validated,
    }
