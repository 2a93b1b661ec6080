"""Client-drift corrections of FedAvg: SCAFFOLD, FedDyn and FedProx.

Each is a :func:`~fedjax_lab.algorithms.rounds.server_round` of existing pieces: a local
optimizer that corrects the gradient (:func:`~fedjax_lab.transforms.correction`,
:func:`~fedjax_lab.transforms.proximal`), per-client state kept across rounds
(:class:`~fedjax_lab.algorithms.client.Persistent`) and a server rule that reads the
population's state (:func:`~fedjax_lab.algorithms.server.population_mean`,
:func:`~fedjax_lab.algorithms.server.correction_mean`). With ``S`` the cohort, ``K`` local
steps of size ``eta`` from the global ``x``:

* **SCAFFOLD** (option II): ``y <- y - eta (g(y) + c - c_i)``;
  ``c_i <- c_i - c + (x - y_K) / (K eta)``; ``x <- x + eta_g mean_S (y_i - x)``;
  ``c = (1/N) sum_i c_i`` over all clients (the paper's ``c += (|S|/N) mean_S dc_i``,
  from zero).
* **FedDyn**: ``y <- y - eta (g(y) - d_i + alpha (y - x))``; ``d_i <- d_i - alpha (y_K - x)``;
  ``x <- mean_S y_i - (1/alpha) h`` with ``h = (1/N) sum_i d_i`` (the paper's
  ``h -= (alpha/N) sum_S (y_i - x)``, from zero).
* **FedProx**: ``y <- y - eta (g(y) + mu (y - x))``; ``x <- mean_S y_i``.

The per-client state is simulated with the server, for every client (as FedSpeed's
corrections are): a client receives what its steps need with the model. ``models_sent``
counts what the papers' clients exchange: 2 models per client of the cohort for FedDyn and
FedProx (their per-client terms never leave the client), 4 for SCAFFOLD (``x`` and ``c``
down, ``Delta y_i`` and ``Delta c_i`` up: twice FedAvg's traffic, as its paper notes).

References:
  Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning",
  ICML 2020. Acar et al., "Federated Learning Based on Dynamic Regularization", ICLR 2021.
  Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from fedjax_lab import local
from fedjax_lab import transforms
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import client as client_lib
from fedjax_lab.algorithms import communication as comm_lib
from fedjax_lab.algorithms import rounds
from fedjax_lab.algorithms import server as server_lib


def zeros_like(params: Any) -> Any:
    return jax.tree.map(jnp.zeros_like, params)


def scaffold(
    loss_fn: local.LossFn,
    *,
    learning_rate: float,
    num_clients: int,
    clients_per_round: int,
    server_optimizer: optax.GradientTransformation | None = None,
    name: str = "scaffold",
    **client_options: Any,
) -> base.Algorithm:
    """SCAFFOLD with option II control variates (module docstring); ``server_optimizer``
    (default ``optax.sgd(1.0)``) is ``eta_g``'s rule, ``client_options`` the settings of
    the client update (``step_counts``: ``K`` is each client's own count)."""

    def new_control(c_i, out, context):  # c_i - c + (x - y_K) / (K eta)
        steps = jnp.sum(out.active).astype(jnp.float32) * learning_rate * context.scale
        c = context.broadcast["control"]
        return jax.tree.map(lambda ci, cg, d: ci - cg - d / steps, c_i, c, out.update)

    persistent = client_lib.Persistent(
        init=zeros_like,
        optimizer_args=lambda c_i, start: {"client_control": c_i},
        update=new_control,
    )
    drift = transforms.correction(plus=("control",), minus=("client_control",))
    phase = local.Phase(optax.chain(drift, optax.sgd(learning_rate)))
    server = rounds.server_rule(
        optax.chain(server_lib.population_mean(), server_optimizer or optax.sgd(1.0)),
        broadcast=lambda state: {"control": state[0].mean},
    )
    return rounds.server_round(
        loss_fn,
        name=name,
        num_clients=num_clients,
        client=client_lib.client_update(phase, persistent=persistent, **client_options),
        cohort=clients_per_round,
        communication=comm_lib.server_mean(models_per_client=4),  # and c down, Delta c_i up
        server=server,
    )


def feddyn(
    loss_fn: local.LossFn,
    *,
    learning_rate: float,
    alpha: float,
    num_clients: int,
    clients_per_round: int,
    name: str = "feddyn",
    **client_options: Any,
) -> base.Algorithm:
    """FedDyn (module docstring): the dynamic regularizer of strength ``alpha > 0``."""
    if not alpha > 0:
        raise ValueError(f"Expected FedDyn's alpha > 0, got {alpha!r}.")
    persistent = client_lib.Persistent(
        init=zeros_like,
        optimizer_args=lambda d_i, start: {"client_gradient": d_i, "anchor": start},
        update=lambda d_i, out, context: jax.tree.map(lambda d, u: d - alpha * u, d_i, out.update),
    )
    drift = transforms.correction(minus=("client_gradient",))
    pull = transforms.proximal(alpha)
    phase = local.Phase(optax.chain(drift, pull, optax.sgd(learning_rate)))
    server = optax.chain(server_lib.correction_mean(scale=-1.0 / alpha), optax.sgd(1.0))
    return rounds.server_round(
        loss_fn,
        name=name,
        num_clients=num_clients,
        client=client_lib.client_update(phase, persistent=persistent, **client_options),
        cohort=clients_per_round,
        server=rounds.server_rule(server),
    )


def fedprox(
    loss_fn: local.LossFn,
    *,
    learning_rate: float,
    mu: float,
    num_clients: int,
    clients_per_round: int,
    server_optimizer: optax.GradientTransformation | None = None,
    name: str = "fedprox",
    **client_options: Any,
) -> base.Algorithm:
    """FedProx (module docstring): local SGD pulled toward the received model with
    strength ``mu``; no state is kept (the row is empty), the anchor is the start."""
    anchored = client_lib.Persistent(
        init=lambda params: (),
        optimizer_args=lambda row, start: {"anchor": start},
        update=lambda row, out, context: row,
    )
    phase = local.Phase(optax.chain(transforms.proximal(mu), optax.sgd(learning_rate)))
    return rounds.server_round(
        loss_fn,
        name=name,
        num_clients=num_clients,
        client=client_lib.client_update(phase, persistent=anchored, **client_options),
        cohort=clients_per_round,
        server=rounds.server_rule(server_optimizer),
    )
