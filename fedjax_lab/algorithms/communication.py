"""Communication pieces of a round: how the clients' messages are combined.

A :class:`Communication` maps what the clients send (the shared part of their models or
updates, stacked over the clients that sent them) to what they receive:

* :func:`server_mean`: the mean over the cohort, computed by a server
  (``mean_i s_i``); every sampled client downloads the model and uploads its message.
* :func:`gossip`: ``Q`` gossip steps over the round's mixing matrix,
  ``x_i <- sum_j (W^Q)_{ij} x_j``, dense, sparse or circulant
  (:mod:`fedjax_lab.gossip`); each nonzero off-diagonal weight is one message per step.
  ``W`` must be row stochastic (every client takes a convex combination of what it
  receives; doubly stochastic ``W`` keep the clients' average).
* :func:`push_sum`: gossip over a column-stochastic ``P`` (what each client sends sums to
  one, as on a directed graph where clients know their out-neighbours only), de-biased by
  per-client weights, so the clients still converge to their exact average.

A piece has state of its own in ``State.communication`` (``()`` for the first two;
push-sum's per-client weights live there), and counts the messages it makes: the round
reports them as ``models_sent``, and their size is that of the communicated part of one
model plus the piece's ``overhead_bytes`` (push-sum's weight).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab import gossip as gossip_lib
from fedjax_lab.algorithms import base

PUSHES = ("update", "model")
WEIGHT_BYTES = 4  # push-sum's float32 weight travels with every message


class Communication(NamedTuple):
    """How messages are combined (see the module docstring).

    Attributes:
      decentralized: whether it consumes the round's mixing matrix (and every client keeps
        its own model) or combines at a server.
      init: ``num_clients -> state`` of the piece.
      combine: ``(state, mixing, messages, weights=None, previous=None) -> (combined,
        state, models_sent)``. Messages are stacked over the senders; ``weights`` (bool or
        float per sender) marks who really sent (a padded Poisson cohort); ``previous``
        (decentralized, when the clients trained since the last combine) is what each
        client held before training, so ``messages - previous`` is its update. A server
        piece returns one combined value, a decentralized one a value per client.
      check_mixing: ``(mixing, num_clients, name) -> None``, raising ValueError on a mixing
        argument it cannot use (a concrete matrix of the wrong stochasticity too).
      stochastic: what the mixing matrix must be, ``"row"`` or ``"column"`` stochastic
        (doubly stochastic satisfies both), or None for a server piece. Runs check their
        topology against it (:func:`fedjax_lab.topology.check_stochastic`).
      overhead_bytes: bytes each message carries beyond the model part.
    """

    decentralized: bool
    init: Callable[[int], Any]
    combine: Callable[..., tuple[Any, Any, jax.Array]]
    check_mixing: Callable[[Any, int, str], None]
    stochastic: str | None = None
    overhead_bytes: int = 0


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


def _concrete_sums(mixing: Any) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Row sums, column sums and the smallest weight of a concrete mixing matrix in any
    form, or None while it is traced (inside jit the run checks its topology instead)."""
    if isinstance(mixing, gossip_lib.CirculantMixing):
        if isinstance(mixing.weights, jax.core.Tracer):
            return None
        w = np.asarray(mixing.weights, np.float64)
        total = np.full(mixing.num_clients, w.sum())
        return total, total, float(w.min(initial=0.0))
    if isinstance(mixing, gossip_lib.SparseMixing):
        if isinstance(mixing.weights, jax.core.Tracer) or isinstance(
            mixing.indices, jax.core.Tracer
        ):
            return None
        w = np.asarray(mixing.weights, np.float64)
        columns = np.bincount(np.asarray(mixing.indices).ravel(), w.ravel(), minlength=w.shape[0])
        return w.sum(axis=1), columns, float(w.min(initial=0.0))
    if isinstance(mixing, jax.core.Tracer):
        return None
    w = np.asarray(mixing, np.float64)
    return w.sum(axis=1), w.sum(axis=0), float(w.min(initial=0.0))


def _check_stochastic(mixing: Any, stochastic: str, name: str, atol: float = 1e-4) -> None:
    sums = _concrete_sums(mixing)
    if sums is None:
        return
    rows, columns, smallest = sums
    if smallest < 0:
        raise ValueError(f"{name} needs a nonnegative mixing matrix; it has a weight {smallest}.")
    along = rows if stochastic == "row" else columns
    worst = int(np.argmax(np.abs(along - 1.0)))
    if abs(along[worst] - 1.0) > atol:
        needs = {
            "row": "what each client receives sums to one (a row-stochastic W, as plain "
            "gossip needs; use push-sum for a column-stochastic one)",
            "column": "what each client sends sums to one (a column-stochastic P, as "
            "push-sum needs; a row-stochastic W belongs to plain gossip)",
        }[stochastic]
        raise ValueError(
            f"{name} needs {needs}, but {stochastic} {worst} of the mixing matrix sums to "
            f"{along[worst]:.6g}."
        )


def check_gossip_mixing(mixing: Any, num_clients: int, name: str, stochastic: str = "row") -> None:
    """Raises ValueError unless ``mixing`` is a mixing matrix over ``num_clients`` clients
    that is ``stochastic`` (checked when the matrix is concrete)."""
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
    _check_stochastic(mixing, stochastic, name)


def gossip(steps: int = 1) -> Communication:
    """``steps`` gossip steps with the round's mixing matrix (``W^steps``)."""
    steps = base.check_positive_int("gossip_steps", steps)

    def combine(state, mixing, messages, weights=None, previous=None):
        del weights, previous  # every client gossips its model
        mixed = gossip_lib.gossip(mixing, messages, steps=steps)
        return mixed, state, steps * messages_per_gossip_step(mixing)

    return Communication(True, _no_state, combine, check_gossip_mixing, stochastic="row")


def push_sum(steps: int = 1, push: str = "update") -> Communication:
    """Push-sum over a column-stochastic ``P``: ``steps`` push steps per round.

    Every client ``i`` holds a value ``x_i`` and a scalar weight ``w_i`` (1 at the start,
    ``State.communication``); it trains and is evaluated with the de-biased
    ``z_i = x_i / w_i``, which is what the round keeps as its model. A push step sends
    ``P[j, i]`` of both to each out-neighbour ``j``:

    .. math::

      x_i \\leftarrow \\textstyle\\sum_j P_{ij}\\, x_j, \\qquad
      w_i \\leftarrow \\textstyle\\sum_j P_{ij}\\, w_j, \\qquad z_i = x_i / w_i.

    ``P`` column stochastic keeps ``sum_i x_i`` and ``sum_i w_i = N``, so on a strongly
    connected graph every ``z_i`` tends to the exact average ``(1/N) sum_j x_j``, where
    plain row-stochastic mixing would tend to a weighted average biased toward the
    clients that many others listen to.

    What is pushed after training (``push``):

    * ``"update"`` (stochastic gradient push): a client adds its update to its value,
      ``x_i = w_i z_i + (y_i - z_i)``, so every client's update enters the network's
      average with weight ``1/N``, as in DFedPGP's analysis. It needs the update, so the
      clients train before they push (``order="train_then_gossip"``).
    * ``"model"``: ``x_i = w_i y_i``, the trained model as the new value; the average then
      weighs client ``i``'s update by ``w_i``.

    Args:
      steps: push steps per round (``P^steps``).
      push: ``"update"`` or ``"model"``.
    """
    steps = base.check_positive_int("gossip_steps", steps)
    if push not in PUSHES:
        raise ValueError(f"Unknown push {push!r}; expected one of {PUSHES}.")

    def init(num_clients):
        return jnp.ones((num_clients,), jnp.float32)

    def combine(weight, mixing, messages, weights=None, previous=None):
        del weights  # every client pushes
        if push == "update" and previous is None:
            raise ValueError(
                "push-sum with push='update' adds each client's update to its value, so the "
                "clients must train before they push: use order='train_then_gossip' (or "
                "push='model')."
            )

        def scaled(leaf):
            return weight.reshape((-1,) + (1,) * (leaf.ndim - 1)).astype(leaf.dtype) * leaf

        if push == "model":  # x_i = w_i y_i
            values = jax.tree.map(scaled, messages)
        else:  # x_i = w_i z_i + (y_i - z_i)
            values = jax.tree.map(lambda y, z: scaled(z) + (y - z), messages, previous)
        values, mixed_weight = gossip_lib.gossip(mixing, (values, weight), steps=steps)
        debiased = jax.tree.map(
            lambda x: (x / mixed_weight.reshape((-1,) + (1,) * (x.ndim - 1))).astype(x.dtype),
            values,
        )
        return debiased, mixed_weight, steps * messages_per_gossip_step(mixing)

    def check(mixing, num_clients, name):
        check_gossip_mixing(mixing, num_clients, name, stochastic="column")

    return Communication(
        True, init, combine, check, stochastic="column", overhead_bytes=WEIGHT_BYTES
    )
