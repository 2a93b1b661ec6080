"""Communication pieces of a round: how the clients' messages are combined.

A :class:`Communication` maps what the clients send (the shared part of their models or
updates, stacked over the clients that sent them) to what they receive:

* :func:`server_mean`: the mean over the cohort, computed by a server
  (``mean_i s_i``); every sampled client downloads the model and uploads its message.
* :func:`gossip`: ``Q`` gossip steps over the round's mixing matrix,
  ``x_i <- sum_j (W^Q)_{ij} x_j``, dense, sparse or circulant
  (:mod:`fedjax_lab.gossip`); each nonzero off-diagonal weight is one message per step.

A piece has state of its own in ``State.communication`` (``()`` for these two; push-sum's
per-client weights live there), and counts the messages it makes: the round reports them
as ``models_sent``, and their size is that of the communicated part of one model.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedjax_lab import gossip as gossip_lib
from fedjax_lab.algorithms import base


class Communication(NamedTuple):
    """How messages are combined (see the module docstring).

    Attributes:
      decentralized: whether it consumes the round's mixing matrix (and every client keeps
        its own model) or combines at a server.
      init: ``num_clients -> state`` of the piece.
      combine: ``(state, mixing, messages, weights=None) -> (combined, state,
        models_sent)``. Messages are stacked over the senders; ``weights`` (bool or float
        per sender) marks who really sent (a padded Poisson cohort). A server piece returns
        one combined value, a decentralized one a value per client.
      check_mixing: ``(mixing, num_clients, name) -> None``, raising ValueError on a mixing
        argument it cannot use.
    """

    decentralized: bool
    init: Callable[[int], Any]
    combine: Callable[[Any, Any, Any], tuple[Any, Any, jax.Array]]
    check_mixing: Callable[[Any, int, str], None]


def _no_state(num_clients: int) -> tuple:
    del num_clients
    return ()


def _check_no_mixing(mixing: Any, num_clients: int, name: str) -> None:
    del num_clients
    if mixing is not None:
        raise ValueError(f"{name} is server-based: pass mixing=None, got {type(mixing)}.")


def server_mean(denominator: float | None = None) -> Communication:
    """The server's mean over the clients that sent; 2 models per such client (download
    and upload).

    Args:
      denominator: None divides the sum by the number of senders; a number divides by it
        instead (the expected cohort size: what the DP analysis of Poisson sampling needs,
        ``(1/m) sum_{i in S} s_i``).
    """
    if denominator is not None and not denominator > 0:
        raise ValueError(f"Expected a denominator > 0, got {denominator!r}.")

    def combine(state, mixing, messages, weights=None):
        del mixing
        if weights is None:
            m = jax.tree.leaves(messages)[0].shape[0]
            mean = jax.tree.map(lambda s: jnp.mean(s, axis=0), messages)
            return mean, state, jnp.asarray(2 * m, jnp.int32)
        w = jnp.asarray(weights, jnp.float32)
        total = jnp.maximum(jnp.sum(w), 1.0) if denominator is None else denominator
        mean = jax.tree.map(lambda s: jnp.tensordot(w.astype(s.dtype), s, 1) / total, messages)
        return mean, state, (2 * jnp.sum(w)).astype(jnp.int32)

    return Communication(False, _no_state, combine, _check_no_mixing)


def messages_per_gossip_step(mixing: Any) -> jax.Array:
    """Models sent in one gossip step: the nonzero off-diagonal weights of ``W``."""
    if isinstance(mixing, gossip_lib.CirculantMixing):
        others = jnp.asarray([o != 0 for o in mixing.offsets], dtype=bool)
        per_client = jnp.sum((mixing.weights != 0) & others)
        return (mixing.num_clients * per_client).astype(jnp.int32)
    if isinstance(mixing, gossip_lib.SparseMixing):
        own = jnp.arange(mixing.indices.shape[0])[:, None]
        return jnp.sum((mixing.weights != 0) & (mixing.indices != own)).astype(jnp.int32)
    w = jnp.asarray(mixing)
    return jnp.sum((w != 0) & ~jnp.eye(w.shape[0], dtype=bool)).astype(jnp.int32)


def check_gossip_mixing(mixing: Any, num_clients: int, name: str) -> None:
    """Raises ValueError unless ``mixing`` is a mixing matrix over ``num_clients`` clients."""
    if mixing is None:
        raise ValueError(f"{name} is decentralized: pass the round's mixing matrix, got None.")
    if isinstance(mixing, (gossip_lib.SparseMixing, gossip_lib.CirculantMixing)):
        if gossip_lib.num_clients(mixing) != num_clients:
            raise ValueError(
                f"Expected a {type(mixing).__name__} over {num_clients} clients, got one over "
                f"{gossip_lib.num_clients(mixing)}."
            )
    elif jnp.shape(mixing) != (num_clients, num_clients):
        raise ValueError(
            f"Expected a mixing matrix of shape ({num_clients}, {num_clients}), "
            f"got {jnp.shape(mixing)}."
        )


def gossip(steps: int = 1) -> Communication:
    """``steps`` gossip steps with the round's mixing matrix (``W^steps``)."""
    steps = base.check_positive_int("gossip_steps", steps)

    def combine(state, mixing, messages, weights=None):
        del weights  # every client gossips
        mixed = gossip_lib.gossip(mixing, messages, steps=steps)
        return mixed, state, steps * messages_per_gossip_step(mixing)

    return Communication(True, _no_state, combine, check_gossip_mixing)
