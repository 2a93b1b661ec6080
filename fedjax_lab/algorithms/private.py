"""Client-level differentially private FL: DP-FedAvg, DP-FedSAM, DP-FedSAM-top_k, DP-DFedSAM.

Each participating client trains from the model it holds, then privatizes its update
before it leaves, with the update transform ``chain([top_k(p),] clip(C),
gaussian_noise(...))`` and its own key from the privacy stream
(:mod:`fedjax_lab.transforms.dp`):

.. math::

  \\tilde\\Delta_i = \\mathrm{clip}_C(\\Delta_i) + \\mathcal{N}(0, \\sigma^2 C^2 / |S|),
  \\qquad x \\leftarrow x + \\frac{1}{m} \\sum_{i \\in S} \\tilde\\Delta_i .

The noise of the sum is exactly the central mechanism's ``N(0, (sigma C)^2)`` whatever the
size of the cohort ``S``: each client adds its share ``sigma C / sqrt(|S|)``, and when no
client takes part the server adds ``N(0, (sigma C / m)^2)`` to the (empty) mean itself.
The server divides the sum by the *expected* cohort size ``m = qN``, as the analysis of the
sampled Gaussian mechanism needs, so the mean carries ``N(0, (sigma C / m)^2)``. (Noise of
``sigma C / sqrt(m)`` per client would leave a smaller-than-expected Poisson cohort with
less noise than the accounting assumes.) The guarantee is that of the sum: secure
aggregation or a trusted server; one message alone carries less noise. Sampling matches
the accounting: by default every client joins independently with probability ``q``
(Poisson, the cohort padded to a static size and masked); ``sampling="fixed"`` takes
exactly ``m`` without replacement (so ``|S| = m``) and is accounted as such (replace-one
neighbours). A host hook reports ``epsilon`` at ``delta`` after every round
(:mod:`fedjax_lab.privacy`) and, given ``dp.target_epsilon``, stops the run before the
round that would exceed it.

The released code's variants are options: per-tensor clipping (``dp.per_tensor_clip``,
with the noise scaled to the sensitivity ``C sqrt(L)`` of ``L`` tensors so that epsilon
stays right), ASAM (``sam.adaptive``), local momentum (``local.momentum=0.5``) and weight
decay (``local.weight_decay=5e-4``). Its sample-size-weighted mean is not offered: a
weight that depends on a client's data size changes the sensitivity the accounting
assumes.

DP-DFedSAM: the decentralized family with the same update transform and ``m = 1`` (each
client's message is seen on its own by its neighbours, so it carries noise of std
``sigma C``); it is accounted as ``T`` Gaussian mechanisms without sampling (``q = 1``).

References:
  McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018.
  Shi et al., "Make Landscape Flatter in Differentially Private Federated Learning",
  CVPR 2023 (DP-FedSAM, DP-FedSAM-top_k).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import numpy as np
import optax

from fedjax_lab import local
from fedjax_lab import privacy
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import client as client_lib
from fedjax_lab.algorithms import cohorts
from fedjax_lab.algorithms import communication
from fedjax_lab.algorithms import rounds
from fedjax_lab.algorithms.decentralized import decentralized
from fedjax_lab.transforms import dp


def check_budget(target_epsilon: float | None, first_round_epsilon: float) -> None:
    """A ValueError unless ``target_epsilon`` is None, or positive and not exceeded by the
    first round's epsilon."""
    if target_epsilon is None:
        return
    if not target_epsilon > 0:
        raise ValueError(f"Expected dp.target_epsilon > 0 or None, got {target_epsilon!r}.")
    if first_round_epsilon > target_epsilon:
        raise ValueError(
            f"dp.target_epsilon={target_epsilon} is exceeded by the first round already "
            f"(epsilon {first_round_epsilon:.4g} after 1 round); raise it, or raise "
            "dp.noise_multiplier."
        )


def budget_stop(
    target_epsilon: float, round_index: int, after: float, verb: str = "would"
) -> str | None:
    """Why round ``round_index`` may not run, when epsilon ``after`` it exceeds the budget."""
    if after <= target_epsilon:
        return None
    return (
        f"round {round_index} {verb} take epsilon to {after:.4g}, past "
        f"dp.target_epsilon={target_epsilon}"
    )


def epsilon_hook(
    epsilon_after: Callable[[int], float], target_epsilon: float | None = None
) -> base.HostHook:
    """A host hook reporting ``epsilon`` after every round (its state: the rounds so far).

    Args:
      epsilon_after: ``rounds -> epsilon`` of the run's mechanism after that many rounds
        (:func:`accountant_epsilon`, or zCDP for Fed-LTP).
      target_epsilon: a budget. The run stops before the round that would take epsilon
        past it; a budget that a single round exceeds is an error now.
    """
    epsilon_after = functools.lru_cache(maxsize=None)(epsilon_after)
    if target_epsilon is not None:
        check_budget(target_epsilon, epsilon_after(1))

    def after_round(state, round_index, metrics):
        del metrics
        done = int(state["rounds"]) + 1
        return {"rounds": np.asarray(done, np.int64)}, {"epsilon": epsilon_after(done)}

    def stop_before(state, round_index):
        return budget_stop(target_epsilon, round_index, epsilon_after(int(state["rounds"]) + 1))

    return base.HostHook(
        lambda: {"rounds": np.zeros((), np.int64)},
        after_round,
        stop_before if target_epsilon is not None else None,
    )


def accountant_epsilon(
    mechanism: privacy.Mechanism, delta: float, accountant: str = "rdp"
) -> Callable[[int], float]:
    """``rounds -> epsilon`` at ``delta`` of the sampled Gaussian mechanism (validated now)."""
    delta = privacy.accounting.check_delta(delta)
    privacy.epsilon(mechanism, 1, delta, accountant)
    return lambda rounds: privacy.epsilon(mechanism, rounds, delta, accountant)


def privatizer(
    clip_norm: float,
    noise_multiplier: float,
    expected_clients: float | None,
    top_k: float | None,
    per_tensor: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """``chain([top_k(p),] clip(C), gaussian_noise(sigma, C, m))`` (noise on the kept
    coordinates with top-k; with per-tensor clipping, the noise grows with the sensitivity
    ``C sqrt(L)``). ``expected_clients=None`` splits the sum's noise over the clients that
    take part (``split_over_cohort``), as Poisson cohorts need."""
    pieces = [] if top_k is None else [dp.top_k(top_k)]
    pieces += [
        dp.clip(clip_norm, per_tensor=per_tensor),
        dp.gaussian_noise(
            noise_multiplier,
            clip_norm=clip_norm,
            expected_clients=expected_clients,
            on_support=top_k is not None,
            per_tensor_clip=per_tensor,
            split_over_cohort=expected_clients is None,
        ),
    ]
    return optax.chain(*pieces)


class DPSettings(NamedTuple):
    """The client-level DP mechanism of a run.

    Attributes:
      clip_norm, noise_multiplier, delta: C, sigma and the delta of the reported epsilon.
      accountant: ``"rdp"`` or ``"pld"`` (Poisson sampling only).
      per_tensor_clip: clip each tensor to C (the released code's variant) instead of the
        whole update; the noise then scales with the sensitivity ``C sqrt(L)``.
      target_epsilon: stop before the round that would exceed this epsilon, or None.
    """

    clip_norm: float
    noise_multiplier: float
    delta: float
    accountant: str = "rdp"
    per_tensor_clip: bool = False
    target_epsilon: float | None = None

    def hook(self, mechanism: privacy.Mechanism) -> base.HostHook:
        """The host hook reporting epsilon of ``mechanism`` (and stopping at the budget)."""
        epsilon = accountant_epsilon(mechanism, self.delta, self.accountant)
        return epsilon_hook(epsilon, self.target_epsilon)


def dp_fedavg(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    settings: DPSettings,
    sampling: str = "poisson",
    top_k: float | None = None,
    server_optimizer: optax.GradientTransformation | None = None,
    name: str = "dp_fedavg",
    **client_options: Any,
) -> base.Algorithm:
    """DP-FedAvg with any local optimizer (see the module docstring).

    Args:
      clients_per_round: m, the expected (Poisson) or exact (fixed) cohort size; q = m / N.
      settings: the mechanism (:class:`DPSettings`).
      sampling: ``"poisson"`` (default) or ``"fixed"``.
      top_k: keep this fraction of the update's coordinates (DP-FedSAM-top_k), or None;
        each client then sends its k kept coordinates as (value, index) pairs.
      **client_options: the other settings of the client update (``step_counts``,
        ``lr_decay``).
    """
    s = settings
    mechanism = privacy.Mechanism(s.noise_multiplier, num_clients, clients_per_round, sampling)
    server = server_optimizer or optax.sgd(1.0)
    if sampling == "poisson":
        cohort = cohorts.poisson_cohort(num_clients, clients_per_round / num_clients)
        # The clients split sigma C over the cohort; an empty one gets it from the server.
        split_over = None
        empty = dp.noise_std(s.noise_multiplier, s.clip_norm, 1) / clients_per_round
        server = optax.chain(dp.empty_cohort_noise(empty), server)
    else:
        cohort = cohorts.fixed_cohort(num_clients, clients_per_round)
        split_over = clients_per_round
    transform = privatizer(s.clip_norm, s.noise_multiplier, split_over, top_k, s.per_tensor_clip)
    piece = communication.server_mean(denominator=clients_per_round)
    return rounds.server_round(
        loss_fn,
        name=name,
        num_clients=num_clients,
        client=client_lib.client_update(
            local.Phase(local_optimizer), transform=transform, **client_options
        ),
        cohort=cohort,
        communication=piece if top_k is None else communication.sparse(piece),
        server=rounds.server_rule(server),
        host_hook=s.hook(mechanism),
    )


def dp_dfedsam(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    settings: DPSettings,
    name: str = "dp_dfedsam",
    **kwargs: Any,
) -> base.Algorithm:
    """Decentralized training where each client privatizes its update before gossip.

    ``kwargs``: the other arguments of
    :func:`~fedjax_lab.algorithms.decentralized.decentralized`.
    """
    s = settings
    mechanism = privacy.Mechanism(s.noise_multiplier, num_clients, num_clients, "poisson")
    return decentralized(
        loss_fn,
        local_optimizer,
        num_clients=num_clients,
        transform=privatizer(s.clip_norm, s.noise_multiplier, 1, None, s.per_tensor_clip),
        host_hook=s.hook(mechanism),
        name=name,
        **kwargs,
    )
