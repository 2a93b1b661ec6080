"""Registry entries of the client-drift corrections: SCAFFOLD, FedDyn, FedProx (the
``feddyn`` and ``fedprox`` sections)."""

from __future__ import annotations

from fedjax_lab.algorithms import drift
from fedjax_lab.specs import base
from fedjax_lab.specs.fields import Field


def _build_scaffold(c, loss_fn):
    return drift.scaffold(loss_fn, learning_rate=c.local.learning_rate, **base.server_kwargs(c))


def _build_feddyn(c, loss_fn):
    return drift.feddyn(  # the paper's server rule, x <- mean y - h / alpha: not configurable
        loss_fn, learning_rate=c.local.learning_rate, alpha=c.feddyn.alpha, **base.cohort_kwargs(c)
    )


def _build_fedprox(c, loss_fn):
    return drift.fedprox(
        loss_fn, learning_rate=c.local.learning_rate, mu=c.fedprox.mu, **base.server_kwargs(c)
    )


SCAFFOLD = base.AlgorithmSpec(
    name="scaffold",
    summary="server; local SGD corrected by control variates c - c_i (option II)",
    build=_build_scaffold,
)
FEDDYN = base.AlgorithmSpec(
    name="feddyn",
    summary="server; local SGD on a dynamic regularizer; the server's h corrects the mean",
    build=_build_feddyn,
    fields=(Field("feddyn.alpha", 0.01, "alpha, the dynamic regularizer's strength"),),
)
FEDPROX = base.AlgorithmSpec(
    name="fedprox",
    summary="server; local SGD with a proximal pull mu (y - x) toward the global model",
    build=_build_fedprox,
    fields=(Field("fedprox.mu", 0.01, "mu, the proximal pull toward the global model"),),
)
