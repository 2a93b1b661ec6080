"""Registry entries of client-level DP: DP-FedAvg, DP-FedSAM, DP-FedSAM-top_k, DP-DFedSAM
(the ``dp`` section)."""

from __future__ import annotations

from fedjax_lab.algorithms import private
from fedjax_lab.specs import base
from fedjax_lab.specs.fields import Field

FIELDS = (
    Field("dp.clip_norm", 0.2, "C, the L2 bound of each client's update"),
    Field("dp.noise_multiplier", 0.95, "sigma: the cohort mean gets std sigma C / m"),
    Field("dp.delta", 5e-3, "delta of the reported epsilon"),
    Field(
        "dp.target_epsilon", None, "stop before a round would exceed it; None = no budget", float
    ),
    Field("dp.sampling", "poisson", "poisson (q = m / N per client) or fixed (m of N)"),
    Field("dp.accountant", "rdp", "rdp or pld (Poisson sampling only)"),
    Field("dp.topk_fraction", 0.5, "dp_fedsam_topk: fraction p of coordinates kept"),
    Field("dp.per_tensor_clip", False, "clip each tensor to C (noise scaled by sqrt(tensors))"),
)


def settings(c) -> private.DPSettings:
    """The ``dp`` section's mechanism."""
    return private.DPSettings(
        clip_norm=c.dp.clip_norm,
        noise_multiplier=c.dp.noise_multiplier,
        delta=c.dp.delta,
        accountant=c.dp.accountant,
        per_tensor_clip=c.dp.per_tensor_clip,
        target_epsilon=c.dp.target_epsilon,
    )


def _server_builder(name: str, local_optimizer, top_k: bool = False):
    def build(c, loss_fn):
        return private.dp_fedavg(
            loss_fn,
            local_optimizer(c),
            name=name,
            settings=settings(c),
            sampling=c.dp.sampling,
            top_k=c.dp.topk_fraction if top_k else None,
            **base.server_kwargs(c),
        )

    return build


def _build_dp_dfedsam(c, loss_fn):
    return private.dp_dfedsam(
        loss_fn,
        base.local_sam_sgd(c),
        name="dp_dfedsam",
        settings=settings(c),
        **base.decentralized_kwargs(c),
    )


_DP_DEFAULTS = {"sam.rho": 0.5}  # the released DP-FedSAM code's radius
DP_FEDAVG = base.AlgorithmSpec(
    name="dp_fedavg",
    summary="server, Poisson-sampled; local SGD; clipped, noised updates; epsilon reported",
    build=_server_builder("dp_fedavg", base.local_sgd),
    fields=FIELDS,
)
DP_FEDSAM = base.AlgorithmSpec(
    name="dp_fedsam",
    summary="dp_fedavg with local SAM + SGD",
    build=_server_builder("dp_fedsam", base.local_sam_sgd),
    fields=FIELDS,
    defaults=_DP_DEFAULTS,
)
DP_FEDSAM_TOPK = base.AlgorithmSpec(
    name="dp_fedsam_topk",
    summary="dp_fedsam sending the top-k coordinates of each update (noise on them only)",
    build=_server_builder("dp_fedsam_topk", base.local_sam_sgd, top_k=True),
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
