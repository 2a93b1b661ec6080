"""What the registry knows of an algorithm, and the shared config sections read into the
arguments of the algorithm factories.

Builders receive a config already resolved by :func:`fedjax_lab.specs.config.resolve`, so
every value read here is set. The builders read the config only; the factories they call
(:mod:`fedjax_lab.algorithms`) know nothing of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections
import numpy as np
import optax

from fedjax_lab import validation
from fedjax_lab.algorithms import base as algorithm_base
from fedjax_lab.algorithms import client as client_lib
from fedjax_lab.transforms import sharpness_aware

SERVER_OPTIMIZERS = {
    "sgd": optax.sgd,
    "adam": optax.adam,
    "yogi": optax.yogi,
    "adagrad": optax.adagrad,
}
STEP_COUNTS = ("equal", "fixed", "drawn")
_FIXED_STEP_COUNTS_SALT = 0x5E9C  # the fixed counts' own stream of config.seed


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """An algorithm as the registry knows it: how to build it from a config.

    Attributes:
      name: the registered name (``config.algorithm``).
      summary: one line for ``fedjax-lab list``.
      build: ``(resolved config, loss_fn) -> Algorithm``. Every key of the algorithm's
        sections (``local``, ``sam``, ``server``, ``communication``'s gossip keys and its
        own) that it does not read must keep its default: setting it is an error that
        names the keys it does read.
      fields: the algorithm's own config section, as :class:`fedjax_lab.specs.fields.Field`
        s with dotted keys under a section of its own (``"fedspeed.prox_strength"``).
      defaults: the algorithm's values for shared keys left unset (``None``) in a config,
        by dotted key (``{"communication.gossip_steps": 4}``).
      model: for an algorithm that tunes a pre-trained model, ``(resolved config,
        num_classes, input_shape, key) -> (flax module, initial params)``, the model the
        run trains and evaluates when ``config.model`` is ``"pretrained"``; None: the
        algorithm trains ``config.model`` from its initialization.
      model_keys: the keys ``model`` reads (they count as read when it is used).
    """

    name: str
    summary: str
    build: Callable[[Any, Callable], algorithm_base.Algorithm]
    fields: tuple = ()
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: Callable[[Any, int, tuple, Any], tuple[Any, Any]] | None = None
    model_keys: tuple[str, ...] = ()


def step_counts(c: ml_collections.ConfigDict) -> client_lib.StepCounts | None:
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
        return client_lib.uniform_step_counts(low, high)
    rng = np.random.default_rng([c.seed, _FIXED_STEP_COUNTS_SALT])
    return client_lib.fixed_step_counts(rng.integers(low, high + 1, size=c.num_clients))


def client_options(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """The client update's settings every algorithm reads: step counts and lr decay."""
    return dict(step_counts=step_counts(c), lr_decay=c.local.lr_decay)


def momentum(c: ml_collections.ConfigDict) -> float | None:
    """``local.momentum``, checked to lie in [0, 1); None for 0 (plain SGD)."""
    value = c.local.momentum
    if not 0 <= value < 1:
        raise ValueError(f"Expected local.momentum in [0, 1), got {value!r}.")
    return value or None


def weight_decay(c: ml_collections.ConfigDict) -> float:
    """``local.weight_decay``, checked to be >= 0."""
    wd = c.local.weight_decay
    if not wd >= 0:
        raise ValueError(f"Expected local.weight_decay >= 0, got {wd!r}.")
    return wd


def local_sgd(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Local SGD with the configured step size, momentum and weight decay (``local``)."""
    wd = weight_decay(c)
    sgd = optax.sgd(c.local.learning_rate, momentum=momentum(c))
    return optax.chain(optax.add_decayed_weights(wd), sgd) if wd > 0 else sgd


def local_sam_sgd(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """SAM + SGD with the ``local`` and ``sam`` sections."""
    return sharpness_aware.sam_sgd(
        c.local.learning_rate,
        c.sam.rho,
        momentum=momentum(c),
        adaptive=c.sam.adaptive,
        weight_decay=weight_decay(c),
    )


def server_optimizer(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The server update of the mean client update (``server``)."""
    validation.check_name("server optimizer", c.server.optimizer, SERVER_OPTIMIZERS)
    if not c.server.learning_rate > 0:
        raise ValueError(f"Expected server.learning_rate > 0, got {c.server.learning_rate!r}.")
    return SERVER_OPTIMIZERS[c.server.optimizer](c.server.learning_rate)


def cohort_kwargs(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """Arguments of every server-based factory: the population, the cohort, the client
    options."""
    return dict(
        num_clients=c.num_clients,
        clients_per_round=c.server.clients_per_round,
        **client_options(c),
    )


def server_kwargs(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """:func:`cohort_kwargs` and the server optimizer (the ``server`` section), for the
    factories whose server rule is configurable."""
    return dict(cohort_kwargs(c), server_optimizer=server_optimizer(c))


def decentralized_kwargs(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """Arguments of the decentralized factories."""
    return dict(
        num_clients=c.num_clients,
        gossip_steps=c.communication.gossip_steps,
        order=c.communication.order,
        **client_options(c),
    )
