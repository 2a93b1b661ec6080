"""What every federated algorithm is: a named bundle of pure functions.

An algorithm is built by a factory (``fedavg``, ``dfedsam``, or one of the two round
skeletons directly, :func:`fedjax_lab.algorithms.rounds.server_round` and
:func:`~fedjax_lab.algorithms.rounds.gossip_round`) that validates its hyperparameters and
closes over them, and returns an :class:`Algorithm` whose functions are pure and jittable:

* ``init(params) -> state``: the starting state from one model (every client starts there).
* ``cohort(key) -> int32[m]``: the clients that train this round (all of them for the
  decentralized family, ``m`` sampled without replacement for server-based ones). Sample
  the batches for exactly these clients, in this order.
* ``round(state, mixing, batches, key, execution=VMAP) -> (state, metrics)``: one
  communication round; ``execution`` (:class:`fedjax_lab.clients.Execution`) says how the
  clients are mapped (vmap, chunked, sequential; the local steps' unrolling), so the same
  algorithm runs under any of them.
  ``batches`` is a pytree with leaves ``[m, K, ...]`` (K local steps); ``mixing`` is the
  round's mixing matrix (dense ``[N, N]``, :class:`~fedjax_lab.gossip.SparseMixing` or
  :class:`~fedjax_lab.gossip.CirculantMixing`), or ``None`` for server-based algorithms.
  ``metrics`` is a dict of scalars. Every one of them reaches ``metrics.jsonl``,
  TensorBoard and the summary; ``train_loss`` is always there, and the keys of
  ``message_bytes`` count the messages sent this round.
* ``client_params(state) -> params [N, ...]``: the model each client is evaluated with
  (its own for decentralized algorithms, the global one for server-based ones). The
  runner's evaluation and fingerprint read the state only through it.
* ``message_bytes(params) -> {metric: bytes}``: for each message-count metric of
  ``round``, the bytes of one such message (static, from the shapes of one model). The
  bytes a round sends are ``sum(metrics[k] * message_bytes[k])``: dense models, a shared
  part, sparse updates or (seed, scalar) pairs are all declared this way.
* ``host_hook``: optional host-side work after every round, with state of its own that the
  runner checkpoints (:class:`HostHook`, a privacy accountant say).

Randomness: the round key is split into the streams of :mod:`fedjax_lab.randomness`, and a
client's key is ``fold_in(stream, client_id)``, so results do not depend on the client
execution strategy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class State(NamedTuple):
    """The state of any composed algorithm.

    Attributes:
      params: the global model (server-based) or every client's model, leaves ``[N, ...]``
        (decentralized).
      round: int32 scalar, rounds completed so far.
      server: the server optimizer's state (``()`` when there is none).
      clients: persistent per-client state, leaves ``[N, ...]`` (``()`` when there is none).
      communication: the communication piece's state, such as push-sum weights (``()``).
    """

    params: Any
    round: jax.Array
    server: Any = ()
    clients: Any = ()
    communication: Any = ()


class HostHook(NamedTuple):
    """Host-side work after every round, with state the runner checkpoints.

    Attributes:
      init: ``() -> state``, a pytree of NumPy arrays with a fixed structure.
      after_round: ``(state, round, metrics) -> (state, extra_metrics)``, called on the
        host after round ``round`` (1-based) with that round's metrics as Python numbers;
        ``extra_metrics`` (scalars) join the round's records and the progress bar.
      stop_before: optional ``(state, round) -> reason or None``, asked on the host before
        round ``round`` (1-based) runs: a reason (a privacy budget that round would
        exceed, say) ends the run after the last completed round, which is evaluated and
        checkpointed, with the reason in ``summary.json`` (``stopped``).
    """

    init: Callable[[], Any]
    after_round: Callable[[Any, int, dict[str, float]], tuple[Any, dict[str, float]]]
    stop_before: Callable[[Any, int], str | None] | None = None


class Exchange(NamedTuple):
    """What the clients of an algorithm exchange, as a run needs to know it.

    Attributes:
      message_bytes: ``params -> {message-count metric: bytes per message}`` (static, from
        the shapes of one model).
      mixing: what a decentralized algorithm's mixing matrix must be: ``"row"`` stochastic
        (plain gossip) or ``"column"`` stochastic (push-sum); None when a server combines
        the messages. A run checks its topology against it.
      labels: the partition of the parameters (:mod:`fedjax_lab.partition`) whose
        ``"shared"`` part is communicated; None when everything is. Evaluation measures
        consensus over the shared part.
    """

    message_bytes: Callable[[Any], dict[str, int]]
    mixing: str | None = None
    labels: Any = None


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A federated algorithm as pure functions (see the module docstring).

    Attributes:
      name: the algorithm's name.
      participants: the :class:`~fedjax_lab.algorithms.cohorts.Cohort` of each round (every
        client, in id order, for a gossip round); its ``population`` is N.
      init: ``params -> state``.
      round: ``(state, mixing, batches, key, execution=VMAP) -> (state, metrics)``;
        ``execution`` (:class:`fedjax_lab.clients.Execution`) is how the clients are mapped.
      client_params: ``state -> params`` stacked over all N clients.
      client_axes: ``state -> pytree of bools`` over the state's leaves: True where the
        leaf carries the client axis ``[N, ...]`` (sharding splits exactly those).
      exchange: what the clients send and over which mixing (:class:`Exchange`).
      local_steps: batches each client consumes per round, or None for any number.
      host_hook: a :class:`HostHook`, or None.
    """

    name: str
    participants: Any
    init: Callable[[Any], Any]
    round: Callable[..., tuple[Any, dict[str, jax.Array]]]
    client_params: Callable[[Any], Any]
    client_axes: Callable[[Any], Any]
    exchange: Exchange
    local_steps: int | None = None
    host_hook: HostHook | None = None

    @property
    def num_clients(self) -> int:
        """N, the size of the client population."""
        return self.participants.population

    @property
    def decentralized(self) -> bool:
        """Whether ``round`` consumes a mixing matrix (every client keeps its own model)."""
        return self.exchange.mixing is not None

    @property
    def cohort_size(self) -> int:
        """m, the client slots of each round (batches are sampled for each)."""
        return self.participants.slots

    def cohort(self, key: jax.Array) -> jax.Array:
        """The int32 ids of the clients that train in the round of ``key``, in slot order."""
        return self.participants.sample(key)[0]

    def message_bytes(self, params: Any) -> dict[str, int]:
        """The bytes of one message of each message-count metric (``exchange.message_bytes``)."""
        return self.exchange.message_bytes(params)


def round_step_scale(round_index: jax.Array, lr_decay: float) -> jax.Array:
    """The round-level step multiplier ``lr_decay ** round``."""
    return jnp.asarray(lr_decay, jnp.float32) ** round_index.astype(jnp.float32)


def check_batches(batches: Any, cohort_size: int, local_steps: int | None = None) -> None:
    leaves = jax.tree.leaves(batches)
    if not leaves:
        raise ValueError("Expected a non-empty batches pytree.")
    for leaf in leaves:
        if jnp.ndim(leaf) < 2 or leaf.shape[0] != cohort_size:
            raise ValueError(
                f"Expected batch leaves shaped [cohort={cohort_size}, local_steps, ...], "
                f"got a leaf of shape {jnp.shape(leaf)}."
            )
        if local_steps is not None and leaf.shape[1] != local_steps:
            raise ValueError(
                f"Expected {local_steps} batches per client (the local phases' steps), got a "
                f"leaf of shape {jnp.shape(leaf)}."
            )
