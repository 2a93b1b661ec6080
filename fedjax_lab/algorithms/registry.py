"""Algorithms by name, built from an experiment config."""

from __future__ import annotations

import difflib
from typing import Callable

import ml_collections
import optax

from fedjax_lab import local
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms.decentralized import dfedavg
from fedjax_lab.algorithms.decentralized import dfedavgm
from fedjax_lab.algorithms.decentralized import dfedsam
from fedjax_lab.algorithms.server import fedavg
from fedjax_lab.algorithms.server import fedsam

_DEFAULT_GOSSIP_STEPS = {"dfedsam_mgs": 4}


def _server_kwargs(c: ml_collections.ConfigDict) -> dict:
    return dict(
        num_clients=c.num_clients,
        clients_per_round=c.clients_per_round,
        server_learning_rate=c.server_learning_rate,
        lr_decay=c.lr_decay,
        **_execution_kwargs(c),
    )


def _decentralized_kwargs(c: ml_collections.ConfigDict, name: str) -> dict:
    steps = c.gossip_steps or _DEFAULT_GOSSIP_STEPS.get(name, 1)
    return dict(
        num_clients=c.num_clients,
        gossip_steps=steps,
        order=c.order,
        lr_decay=c.lr_decay,
        name=name,
        **_execution_kwargs(c),
    )


def _execution_kwargs(c: ml_collections.ConfigDict) -> dict:
    return dict(strategy=c.strategy, chunk_size=c.chunk_size or None, unroll=c.unroll)


_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict, local.LossFn], base.Algorithm]] = {
    "fedavg": lambda c, f: fedavg(f, optax.sgd(c.learning_rate), **_server_kwargs(c)),
    "fedsam": lambda c, f: fedsam(
        f, learning_rate=c.learning_rate, rho=c.rho, adaptive=c.adaptive_sam, **_server_kwargs(c)
    ),
    "dfedavg": lambda c, f: dfedavg(
        f, learning_rate=c.learning_rate, **_decentralized_kwargs(c, "dfedavg")
    ),
    "dfedavgm": lambda c, f: dfedavgm(
        f,
        learning_rate=c.learning_rate,
        momentum=c.momentum,
        **_decentralized_kwargs(c, "dfedavgm"),
    ),
    "dfedsam": lambda c, f: dfedsam(
        f,
        learning_rate=c.learning_rate,
        rho=c.rho,
        adaptive=c.adaptive_sam,
        **_decentralized_kwargs(c, "dfedsam"),
    ),
    "dfedsam_mgs": lambda c, f: dfedsam(
        f,
        learning_rate=c.learning_rate,
        rho=c.rho,
        adaptive=c.adaptive_sam,
        **_decentralized_kwargs(c, "dfedsam_mgs"),
    ),
}


def available_algorithms() -> tuple[str, ...]:
    return tuple(_BUILDERS)


def build_algorithm(config: ml_collections.ConfigDict, loss_fn: local.LossFn) -> base.Algorithm:
    """The algorithm ``config.algorithm`` with the config's hyperparameters."""
    name = config.algorithm
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown algorithm {name!r}.{hint} Available: {', '.join(_BUILDERS)}.")
    return _BUILDERS[name](config, loss_fn)
