"""Registry entries of the server-based baselines: FedAvg, FedSAM, FedSpeed."""

from __future__ import annotations

from fedjax_lab.algorithms import server
from fedjax_lab.specs import base
from fedjax_lab.specs.fields import Field


def _build_fedspeed(c, loss_fn):
    return server.fedspeed(
        loss_fn,
        learning_rate=c.local.learning_rate,
        rho=c.sam.rho,
        prox_strength=c.fedspeed.prox_strength,
        adaptive=c.sam.adaptive,
        weight_decay=base.weight_decay(c),
        **base.server_kwargs(c),
    )


FEDAVG = base.AlgorithmSpec(
    name="fedavg",
    summary="server, m of N clients per round; local SGD; mean of client updates",
    build=lambda c, f: server.fedavg(f, base.local_sgd(c), name="fedavg", **base.server_kwargs(c)),
)
FEDSAM = base.AlgorithmSpec(
    name="fedsam",
    summary="server; local SAM + SGD; mean of client updates",
    build=lambda c, f: server.fedavg(
        f, base.local_sam_sgd(c), name="fedsam", **base.server_kwargs(c)
    ),
)
FEDSPEED = base.AlgorithmSpec(
    name="fedspeed",
    summary="server; SAM + prox-correction h_i kept per client across rounds",
    build=_build_fedspeed,
    fields=(Field("fedspeed.prox_strength", 0.1, "lambda, the pull toward x - h_i"),),
    defaults={"sam.rho": 0.1},
)
