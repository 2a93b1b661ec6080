"""The shared config sections read into the arguments of the algorithm factories.

Builders in the algorithm modules receive a config already resolved by
:func:`fedjax_lab.config.resolve`, so every value read here is set.
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np
import optax

from fedjax_lab import validation
from fedjax_lab.algorithms import rounds
from fedjax_lab.transforms import sharpness_aware

SERVER_OPTIMIZERS = {
    "sgd": optax.sgd,
    "adam": optax.adam,
    "yogi": optax.yogi,
    "adagrad": optax.adagrad,
}


STEP_COUNTS = ("equal", "fixed", "drawn")


def step_counts(c: ml_collections.ConfigDict) -> rounds.StepCounts | None:
    """Per-client local step counts (``local.step_counts``, ``local.min_steps``).

    ``"fixed"`` draws client ``i``'s ``K_i`` uniformly from ``[min_steps, steps]`` once
    (from ``config.seed``); ``"drawn"`` draws it anew every round (the round's steps
    stream); ``"equal"`` runs every step. A client runs the first ``K_i`` steps of each
    local phase.
    """
    kind = c.local.step_counts
    validation.check_name("local.step_counts", kind, STEP_COUNTS)
    if kind == "equal":
        return None
    low, high = c.local.min_steps, c.local.steps
    if isinstance(low, bool) or not isinstance(low, int) or not 1 <= low <= high:
        raise ValueError(
            f"Expected an integer 1 <= local.min_steps <= local.steps = {high}, got {low!r}."
        )
    if kind == "drawn":
        return rounds.uniform_step_counts(low, high)
    rng = np.random.default_rng([c.seed, _FIXED_STEP_COUNTS_SALT])
    return rounds.fixed_step_counts(rng.integers(low, high + 1, size=c.num_clients))


_FIXED_STEP_COUNTS_SALT = 0x5E9C  # the fixed counts' own stream of config.seed


def execution_kwargs(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """Client strategy, scan unrolling (``execution``) and per-client step counts."""
    return dict(
        strategy=c.execution.strategy,
        chunk_size=c.execution.chunk_size,
        unroll=c.execution.unroll,
        step_counts=step_counts(c),
    )


def local_sgd(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Local SGD with the configured step size, momentum and weight decay (``local``)."""
    wd = c.local.weight_decay
    if not wd >= 0:
        raise ValueError(f"Expected local.weight_decay >= 0, got {wd!r}.")
    sgd = optax.sgd(c.local.learning_rate, momentum=c.local.momentum or None)
    return optax.chain(optax.add_decayed_weights(wd), sgd) if wd > 0 else sgd


def server_optimizer(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The server update of the mean client update (``server``)."""
    validation.check_name("server optimizer", c.server.optimizer, SERVER_OPTIMIZERS)
    if not c.server.learning_rate > 0:
        raise ValueError(f"Expected server.learning_rate > 0, got {c.server.learning_rate!r}.")
    return SERVER_OPTIMIZERS[c.server.optimizer](c.server.learning_rate)


def server_kwargs(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """Arguments of the server-based factories."""
    return dict(
        num_clients=c.num_clients,
        clients_per_round=c.server.clients_per_round,
        server_optimizer=server_optimizer(c),
        lr_decay=c.local.lr_decay,
        **execution_kwargs(c),
    )


def decentralized_kwargs(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """Arguments of the decentralized factories."""
    return dict(
        num_clients=c.num_clients,
        gossip_steps=c.communication.gossip_steps,
        order=c.communication.order,
        lr_decay=c.local.lr_decay,
        **execution_kwargs(c),
    )


def local_sam_sgd(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """SAM + SGD with the ``local`` and ``sam`` sections."""
    return sharpness_aware.sam_sgd(
        c.local.learning_rate,
        c.sam.rho,
        momentum=c.local.momentum or None,
        adaptive=c.sam.adaptive,
        weight_decay=c.local.weight_decay,
    )
