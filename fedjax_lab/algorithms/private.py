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
from typing import Any, Callable

import numpy as np
import optax

from fedjax_lab import config as config_lib
from fedjax_lab import local
from fedjax_lab import privacy
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import communication
from fedjax_lab.algorithms import configured
from fedjax_lab.algorithms.decentralized import decentralized
from fedjax_lab.algorithms import rounds
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


def dp_fedavg(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    clip_norm: float,
    noise_multiplier: float,
    delta: float,
    sampling: str = "poisson",
    accountant: str = "rdp",
    top_k: float | None = None,
    per_tensor_clip: bool = False,
    target_epsilon: float | None = None,
    server_optimizer: optax.GradientTransformation | None = None,
    name: str = "dp_fedavg",
    **kwargs: Any,
) -> base.Algorithm:
    """DP-FedAvg with any local optimizer (see the module docstring).

    Args:
      clients_per_round: m, the expected (Poisson) or exact (fixed) cohort size; q = m / N.
      clip_norm, noise_multiplier, delta: C, sigma and the delta of the reported epsilon.
      sampling: ``"poisson"`` (default) or ``"fixed"``.
      accountant: ``"rdp"`` or ``"pld"`` (Poisson only).
      top_k: keep this fraction of the update's coordinates (DP-FedSAM-top_k), or None;
        each client then sends its k kept coordinates as (value, index) pairs.
      per_tensor_clip: clip each tensor to C (the released code's variant) instead of the
        whole update; the noise then scales with the sensitivity ``C sqrt(L)``.
      target_epsilon: stop before the round that would exceed this epsilon, or None.
      **kwargs: other arguments of :func:`~fedjax_lab.algorithms.rounds.compose`.
    """
    mechanism = privacy.Mechanism(noise_multiplier, num_clients, clients_per_round, sampling)
    server = server_optimizer or optax.sgd(1.0)
    if sampling == "poisson":
        cohort = rounds.poisson_cohort(num_clients, clients_per_round / num_clients)
        # The clients split sigma C over the cohort; an empty one gets it from the server.
        split_over = None
        empty = dp.noise_std(noise_multiplier, clip_norm, 1) / clients_per_round
        server = optax.chain(dp.empty_cohort_noise(empty), server)
    else:
        cohort = rounds.fixed_cohort(num_clients, clients_per_round)
        split_over = clients_per_round
    return rounds.compose(
        loss_fn,
        name=name,
        num_clients=num_clients,
        phases=[local.Phase(local_optimizer)],
        cohort=cohort,
        communication=communication.server_mean(denominator=clients_per_round),
        update_transform=privatizer(
            clip_norm, noise_multiplier, split_over, top_k, per_tensor_clip
        ),
        server_optimizer=server,
        host_hook=epsilon_hook(accountant_epsilon(mechanism, delta, accountant), target_epsilon),
        sparse_messages=top_k is not None,
        **kwargs,
    )


def dp_dfedsam(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clip_norm: float,
    noise_multiplier: float,
    delta: float,
    accountant: str = "rdp",
    per_tensor_clip: bool = False,
    target_epsilon: float | None = None,
    name: str = "dp_dfedsam",
    **kwargs: Any,
) -> base.Algorithm:
    """Decentralized training where each client privatizes its update before gossip."""
    mechanism = privacy.Mechanism(noise_multiplier, num_clients, num_clients, "poisson")
    return decentralized(
        loss_fn,
        local_optimizer,
        num_clients=num_clients,
        update_transform=privatizer(clip_norm, noise_multiplier, 1, None, per_tensor_clip),
        host_hook=epsilon_hook(accountant_epsilon(mechanism, delta, accountant), target_epsilon),
        name=name,
        **kwargs,
    )


FIELDS = (
    config_lib.Field("dp.clip_norm", 0.2, "C, the L2 bound of each client's update"),
    config_lib.Field("dp.noise_multiplier", 0.95, "sigma: the cohort mean gets std sigma C / m"),
    config_lib.Field("dp.delta", 5e-3, "delta of the reported epsilon"),
    config_lib.Field(
        "dp.target_epsilon", None, "stop before a round would exceed it; None = no budget", float
    ),
    config_lib.Field("dp.sampling", "poisson", "poisson (q = m / N per client) or fixed (m of N)"),
    config_lib.Field("dp.accountant", "rdp", "rdp or pld (Poisson sampling only)"),
    config_lib.Field("dp.topk_fraction", 0.5, "dp_fedsam_topk: fraction p of coordinates kept"),
    config_lib.Field(
        "dp.per_tensor_clip", False, "clip each tensor to C (noise scaled by sqrt(tensors))"
    ),
)


def _dp_kwargs(c) -> dict[str, Any]:
    return dict(
        clip_norm=c.dp.clip_norm,
        noise_multiplier=c.dp.noise_multiplier,
        delta=c.dp.delta,
        accountant=c.dp.accountant,
        per_tensor_clip=c.dp.per_tensor_clip,
        target_epsilon=c.dp.target_epsilon,
    )


def _server_builder(name: str, local_optimizer, top_k: bool = False):
    def build(c, loss_fn):
        return dp_fedavg(
            loss_fn,
            local_optimizer(c),
            name=name,
            sampling=c.dp.sampling,
            top_k=c.dp.topk_fraction if top_k else None,
            **_dp_kwargs(c),
            **configured.server_kwargs(c),
        )

    return build


def _build_dp_dfedsam(c, loss_fn):
    return dp_dfedsam(
        loss_fn,
        configured.local_sam_sgd(c),
        name="dp_dfedsam",
        **_dp_kwargs(c),
        **configured.decentralized_kwargs(c),
    )


_DP_DEFAULTS = {"sam.rho": 0.5}  # the released DP-FedSAM code's radius
DP_FEDAVG = base.AlgorithmSpec(
    name="dp_fedavg",
    summary="server, Poisson-sampled; local SGD; clipped, noised updates; epsilon reported",
    build=_server_builder("dp_fedavg", configured.local_sgd),
    fields=FIELDS,
)
DP_FEDSAM = base.AlgorithmSpec(
    name="dp_fedsam",
    summary="dp_fedavg with local SAM + SGD",
    build=_server_builder("dp_fedsam", configured.local_sam_sgd),
    fields=FIELDS,
    defaults=_DP_DEFAULTS,
)
DP_FEDSAM_TOPK = base.AlgorithmSpec(
    name="dp_fedsam_topk",
    summary="dp_fedsam sending the top-k coordinates of each update (noise on them only)",
    build=_server_builder("dp_fedsam_topk", configured.local_sam_sgd, top_k=True),
    fields=FIELDS,
    defaults=_DP_DEFAULTS,
)
DP_DFEDSAM = base.AlgorithmSpec(
    name="dp_dfedsam",
    summary="decentralized DFedSAM; each client privatizes its update before gossip",
    build=_build_dp_dfedsam,
    fields=FIELDS,
    defaults=_DP_DEFAULTS,
)
