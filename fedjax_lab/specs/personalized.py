"""Registry entries of partial personalization: DFedAlt, DFedSalt, DFedPGP, FedPer, FedRep
(the ``personal`` section)."""

from __future__ import annotations

import optax

from fedjax_lab import partition
from fedjax_lab.algorithms import personalized
from fedjax_lab.specs import base
from fedjax_lab.specs.fields import Field

LAYERS = Field("personal.layers", "head", "the personal top-level layers, comma-separated ('head')")
FIELDS = (
    LAYERS,
    Field("personal.head_steps", 5, "K_v: steps on the personal part per round"),
    Field("personal.body_steps", 5, "K_u: steps on the shared part per round"),
    Field("personal.head_learning_rate", 0.1, "step size of the personal phase"),
    Field("personal.body_learning_rate", 0.1, "step size of the shared phase"),
)
PUSH_FIELD = Field(
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
    return personalized.dfedalt(
        loss_fn, head, body, labels=_labels(c), **_steps(c), **base.decentralized_kwargs(c)
    )


def _build_dfedsalt(c, loss_fn):
    head, _ = _phase_optimizers(c)
    return personalized.dfedsalt(
        loss_fn,
        head,
        body_learning_rate=c.personal.body_learning_rate,
        rho=c.sam.rho,
        labels=_labels(c),
        **_steps(c),
        **base.decentralized_kwargs(c),
    )


def _build_dfedpgp(c, loss_fn):
    head, body = _phase_optimizers(c)
    return personalized.dfedpgp(
        loss_fn,
        head,
        body,
        labels=_labels(c),
        push=c.personal.push,
        **_steps(c),
        **base.decentralized_kwargs(c),
    )


def _build_fedper(c, loss_fn):
    return personalized.fedper(
        loss_fn, base.local_sgd(c), labels=_labels(c), **base.server_kwargs(c)
    )


def _build_fedrep(c, loss_fn):
    head, body = _phase_optimizers(c)
    return personalized.fedrep(
        loss_fn, head, body, labels=_labels(c), **_steps(c), **base.server_kwargs(c)
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
