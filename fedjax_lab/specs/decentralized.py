"""Registry entries of the decentralized family: DFedAvg, DFedAvgM, DFedSAM, DFedSAM-MGS."""

from __future__ import annotations

from fedjax_lab.algorithms import decentralized  # the factory (the package exports it)
from fedjax_lab.specs import base


def _builder(name: str, local_optimizer):
    """Builds ``name`` from a config, with ``local_optimizer(config)`` on every client."""

    def build(c, loss_fn):
        return decentralized(
            loss_fn, local_optimizer(c), name=name, **base.decentralized_kwargs(c)
        )

    return build


DFEDAVG = base.AlgorithmSpec(
    name="dfedavg",
    summary="decentralized; local SGD; one gossip step x <- W x",
    build=_builder("dfedavg", base.local_sgd),
)
DFEDAVGM = base.AlgorithmSpec(
    name="dfedavgm",
    summary="decentralized; heavy-ball SGD (buffer reset each round); one gossip step",
    build=_builder("dfedavgm", base.local_sgd),
    defaults={"local.momentum": 0.9},
)
DFEDSAM = base.AlgorithmSpec(
    name="dfedsam",
    summary="decentralized; local SAM + SGD; one gossip step",
    build=_builder("dfedsam", base.local_sam_sgd),
)
DFEDSAM_MGS = base.AlgorithmSpec(
    name="dfedsam_mgs",
    summary="decentralized; local SAM + SGD; Q gossip steps (W^Q, default Q = 4)",
    build=_builder("dfedsam_mgs", base.local_sam_sgd),
    defaults={"communication.gossip_steps": 4},
)
