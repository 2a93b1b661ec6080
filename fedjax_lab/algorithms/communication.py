"""Communication pieces of a round: what a client sends, how it is counted, and how the
messages are combined.

A :class:`Communication` owns the messages of a round:

* **what is sent.** A client sends the shared part of its trained model; with an update
  transform (:mod:`fedjax_lab.algorithms.client`), its transformed update instead (a
  gossip neighbour receives ``x_j + T(y_j - x_j)``); with ``encode``, whatever the
  encoder makes of its round (:func:`encoded`: FedKSeed's (seed, scalar) pairs).
* **how it is combined.** :func:`server_mean`, the mean over the cohort computed by a
  server; :func:`gossip`, ``Q`` steps over the round's mixing matrix, ``x_i <- sum_j
  (W^Q)_{ij} x_j`` (dense, sparse or circulant, :mod:`fedjax_lab.gossip`; ``W`` row
  stochastic); :func:`push_sum`, gossip over a column-stochastic ``P`` de-biased by
  per-client weights, so the clients converge to their exact average on directed graphs.
* **how it is counted.** Each piece reports message counts (``models_sent``: one model per
  nonzero off-diagonal weight per gossip step, two per sampled client for a server, or as
  many model-sized messages as :func:`server_mean` is told);
  :func:`sparse` counts the nonzero coordinates of each message as (value, int32 index)
  pairs instead (``coordinates_sent``); :func:`with_step_traffic` adds traffic inside the
  local steps (split learning's activations at the cut). ``message_bytes`` gives the size
  of one message of each counted kind.

A piece has state of its own in ``State.communication`` (``()`` for most; push-sum's
per-client weights, the last round's :class:`Broadcast` of encoded messages).

**Push-sum** (:func:`push_sum`). Every client ``i`` holds a value ``x_i`` and a scalar
weight ``w_i`` (1 at the start, ``State.communication``); it trains and is evaluated with
the de-biased ``z_i = x_i / w_i``, which is what the round keeps as its model. A push step
sends ``P[j, i]`` of both to each out-neighbour ``j``:

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
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab import gossip as gossip_lib
from fedjax_lab import validation

PUSHES = ("update", "model")
WEIGHT_BYTES = 4  # push-sum's float32 weight travels with every message
INDEX_BYTES = 4  # a sparse message's int32 coordinate index


class Communication(NamedTuple):
    """How messages are made, combined and counted (see the module docstring).

    Attributes:
      combine: ``(state, mixing, messages, *, joined=None, start=None, scale=1.0) ->
        (combined, state, counts)``. ``messages`` are stacked over the senders;
        ``joined`` (bool per sender, or None when all take part) marks who really sent (a padded Poisson cohort);
        ``start`` is the shared part of what the clients started from (the global model;
        each client's own for gossip, None when they have not trained since), ``scale``
        the round's step multiplier. A server piece returns the mean of the messages (the
        mean update, for encoded ones), a gossip piece the mixed value of every client;
        ``counts`` maps message-count metrics to int32 scalars.
      mixing: None for a piece combined by a server; for a gossip piece, what its mixing
        matrix must be: ``"row"`` or ``"column"`` stochastic (doubly stochastic satisfies
        both). Runs check their topology against it.
      init: ``(num_clients, slots=None, message_shapes=None) -> state`` of the piece
        (``slots`` clients send each round; ``message_shapes``: of an encoded message).
      check_mixing: ``(mixing, num_clients, name) -> None``, raising ValueError on a mixing
        argument the piece cannot use (a concrete matrix of the wrong stochasticity too).
      message_bytes: ``(shared part of one model, message shapes) -> {metric: bytes}``, the
        bytes of one message of each counted kind.
      encode: None (a client sends its model or update), or ``ClientOutput -> message``,
        what a client sends instead (:func:`encoded`).
      client_axis: whether the piece's state has a client axis (push-sum's weights).
      counts_messages: whether ``counts`` follow from the messages themselves (so
        :func:`sparse` may recount them).
      step_traffic: ``((metric, per step, bytes each), ...)``, traffic inside the local
        steps (:func:`with_step_traffic`).
    """

    combine: Callable[..., tuple[Any, Any, dict[str, jax.Array]]]
    mixing: str | None
    init: Callable[[int, int, Any], Any]
    check_mixing: Callable[[Any, int, str], None]
    message_bytes: Callable[[Any, Any], dict[str, int]]
    encode: Callable[[Any], Any] | None = None
    client_axis: bool = False
    counts_messages: bool = True
    step_traffic: tuple[tuple[str, int, int], ...] = ()


class Broadcast(NamedTuple):
    """The last round's decoded messages, as every client receives them (``State.communication``
    of :func:`encoded`): ``decode(messages, weights, start, step_scale)`` on the previous
    model rebuilds the new one."""

    messages: Any
    weights: jax.Array
    step_scale: jax.Array


def model_bytes(params: Any) -> int:
    """Bytes needed to send one model (static: from shapes and dtypes)."""
    return sum(int(x.size) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(params))


def _no_state(num_clients: int, slots: int | None = None, message_shapes: Any = None) -> tuple:
    del num_clients, slots, message_shapes
    return ()


def _check_no_mixing(mixing: Any, num_clients: int, name: str) -> None:
    del num_clients
    if mixing is not None:
        raise ValueError(f"{name} is server-based: pass mixing=None, got {type(mixing)}.")


def _dense_bytes(overhead: int = 0) -> Callable[[Any, Any], dict[str, int]]:
    return lambda shared, message_shapes: {"models_sent": model_bytes(shared) + overhead}


def server_mean(denominator: float | None = None, *, models_per_client: int = 2) -> Communication:
    """The server's mean over the clients that sent; ``models_per_client`` model-sized
    messages per such client (``models_sent``).

    Args:
      denominator: None divides the sum by the number of senders; a number divides by it
        instead (the expected cohort size: what the DP analysis of Poisson sampling needs,
        ``(1/m) sum_{i in S} s_i``).
      models_per_client: model-sized messages each client that takes part exchanges with
        the server: 2, the model down and the trained model (or update) up; 4 when a
        model-sized companion travels each way (SCAFFOLD's control variates ``c`` down and
        ``Delta c_i`` up).
    """
    if denominator is not None and not denominator > 0:
        raise ValueError(f"Expected a denominator > 0, got {denominator!r}.")
    per_client = validation.check_positive_int("models_per_client", models_per_client)

    def combine(state, mixing, messages, *, joined=None, start=None, scale=1.0):
        del mixing, start, scale
        if joined is None:
            m = jax.tree.leaves(messages)[0].shape[0]
            mean = jax.tree.map(lambda s: jnp.mean(s, axis=0), messages)
            sent = jnp.asarray(per_client * m, jnp.int32)
        else:
            w = jnp.asarray(joined, jnp.float32)
            total = jnp.maximum(jnp.sum(w), 1.0) if denominator is None else denominator
            mean = jax.tree.map(lambda s: jnp.tensordot(w.astype(s.dtype), s, 1) / total, messages)
            sent = (per_client * jnp.sum(w)).astype(jnp.int32)
        return mean, state, {"models_sent": sent}

    return Communication(combine, None, _no_state, _check_no_mixing, _dense_bytes())


def encoded(
    encode: Callable[[Any], Any], decode: Callable[[Any, jax.Array, Any, jax.Array], Any]
) -> Communication:
    """Each client sends what ``encode`` makes of its round; the server decodes the mean
    update and broadcasts every message, so each client rebuilds the new model.

    Args:
      encode: ``ClientOutput -> message``, a pytree of arrays
        (:class:`~fedjax_lab.algorithms.client.ClientOutput`: the client's phases' final
        optimizer states, the model it started from, the model it trained).
      decode: ``(messages, weights, start, step_scale) -> update``: the mean update of the
        shared part from every slot's message (leaves ``[m, ...]``), the slots' weights
        ``[m]`` (``1 / |S|`` for the clients that take part, 0 for the others), the shared
        part of the model the clients started from, and the round's step multiplier. The
        last round's messages stay in ``State.communication`` (:class:`Broadcast`).

    ``messages_sent`` counts ``|S| (1 + |S|)`` messages: each client of the cohort sends its
    own and receives all of them; their bytes follow from the message's shapes.
    """

    def init(num_clients, slots, message_shapes):
        del num_clients
        zeros = lambda s: jnp.zeros((slots, *s.shape), s.dtype)
        return Broadcast(
            jax.tree.map(zeros, message_shapes),
            jnp.zeros((slots,), jnp.float32),
            jnp.ones((), jnp.float32),
        )

    def combine(state, mixing, messages, *, joined=None, start=None, scale=1.0):
        del state, mixing
        slots = jax.tree.leaves(messages)[0].shape[0]
        joined = jnp.ones((slots,), bool) if joined is None else joined
        size = jnp.sum(joined).astype(jnp.int32)
        weights = joined.astype(jnp.float32) / jnp.maximum(size, 1)
        update = decode(messages, weights, start, scale)
        return update, Broadcast(messages, weights, scale), {"messages_sent": size * (1 + size)}

    return Communication(
        combine,
        None,
        init,
        _check_no_mixing,
        lambda shared, shapes: {"messages_sent": model_bytes(shapes)},
        encode=encode,
        counts_messages=False,
    )


def sparse(piece: Communication) -> Communication:
    """``piece`` with each message counted as its nonzero coordinates, each a (value, int32
    index) pair (``coordinates_sent``): for sparse models and updates (pruned models, top-k)."""
    if not piece.counts_messages:
        raise ValueError("Encoded messages have their own sizes; they cannot be counted sparse.")

    def combine(state, mixing, messages, *, joined=None, start=None, scale=1.0):
        combined, state, counts = piece.combine(
            state, mixing, messages, joined=joined, start=start, scale=scale
        )
        return combined, state, {**counts, "coordinates_sent": _nonzeros_sent(messages, joined)}

    def message_bytes(shared, message_shapes):
        value = max(jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(shared))
        return {"coordinates_sent": value + INDEX_BYTES}

    return piece._replace(combine=combine, message_bytes=message_bytes)


def _nonzeros_sent(sent: Any, joined: jax.Array | None) -> jax.Array:
    """The nonzero coordinates the clients that take part send, in all."""
    per_client = sum(
        jnp.sum(leaf.reshape(leaf.shape[0], -1) != 0, axis=1) for leaf in jax.tree.leaves(sent)
    )
    if joined is not None:
        per_client = jnp.where(joined, per_client, 0)
    return jnp.sum(per_client).astype(jnp.int32)


def with_step_traffic(piece: Communication, traffic: dict[str, tuple[int, int]]) -> Communication:
    """``piece`` plus traffic inside the local steps, ``{metric: (per step, bytes each)}``:
    every step a client runs exchanges ``per step`` messages of ``bytes each`` (split
    learning's activations and gradients at the cut); :func:`step_counts` counts them."""
    for metric, (per_step, size) in traffic.items():
        if isinstance(per_step, bool) or not isinstance(per_step, int) or per_step < 0 or size < 0:
            raise ValueError(
                f"Expected step traffic {metric!r} = (messages per step >= 0, bytes >= 0), "
                f"got {(per_step, size)!r}."
            )
    steps = piece.step_traffic + tuple((m, n, size) for m, (n, size) in traffic.items())
    inner = piece.message_bytes

    def message_bytes(shared, message_shapes):
        return {**inner(shared, message_shapes), **{m: size for m, _, size in steps}}

    return piece._replace(message_bytes=message_bytes, step_traffic=steps)


def step_counts(piece: Communication, steps_run: jax.Array) -> dict[str, jax.Array]:
    """The step-traffic counts of a round whose clients ran ``steps_run`` local steps in all."""
    return {metric: steps_run.astype(jnp.int32) * n for metric, n, _ in piece.step_traffic}


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
    steps = validation.check_positive_int("gossip_steps", steps)

    def combine(state, mixing, messages, *, joined=None, start=None, scale=1.0):
        del joined, start, scale  # every client gossips its model
        mixed = gossip_lib.gossip(mixing, messages, steps=steps)
        return mixed, state, {"models_sent": steps * messages_per_gossip_step(mixing)}

    return Communication(combine, "row", _no_state, check_gossip_mixing, _dense_bytes())


def push_sum(steps: int = 1, push: str = "update") -> Communication:
    """Push-sum over a column-stochastic ``P``, ``steps`` push steps per round, pushing
    the clients' updates (``push="update"``) or models (``"model"``); see the module
    docstring."""
    steps = validation.check_positive_int("gossip_steps", steps)
    if push not in PUSHES:
        raise ValueError(f"Unknown push {push!r}; expected one of {PUSHES}.")

    def init(num_clients, slots=None, message_shapes=None):
        del slots, message_shapes
        return jnp.ones((num_clients,), jnp.float32)

    def combine(weight, mixing, messages, *, joined=None, start=None, scale=1.0):
        del joined, scale  # every client pushes
        previous = start
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
        return debiased, mixed_weight, {"models_sent": steps * messages_per_gossip_step(mixing)}

    def check(mixing, num_clients, name):
        check_gossip_mixing(mixing, num_clients, name, stochastic="column")

    return Communication(
        combine, "column", init, check, _dense_bytes(WEIGHT_BYTES), client_axis=True
    )
