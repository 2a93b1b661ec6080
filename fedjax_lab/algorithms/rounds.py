"""A federated round composed of named pieces.

:func:`compose` builds an :class:`~fedjax_lab.algorithms.base.Algorithm` from

* a **client update**: the local :class:`~fedjax_lab.local.Phase` s every client runs
  (each with its optimizer, step count, trained part and gradient hook), with optional
  :class:`Persistent` per-client state (rows ``[N, ...]`` in ``State.clients``; the cohort's
  rows are gathered before training and scattered back after) and optional per-client step
  counts (:func:`fixed_step_counts`, :func:`uniform_step_counts`);
* an **update transform**: an optax transformation applied to each client's update
  ``delta_i = y_i - x_i`` (the shared part) before it leaves the client, with the client's
  key from the privacy stream, ``key=fold_in(privacy, i)``, and the number of clients
  taking part, ``cohort_size`` (clipping, noise, sparsification);
  without one, a client sends its model as it is;
* a **communication** piece (:mod:`fedjax_lab.algorithms.communication`): the server mean,
  gossip or push-sum, applied to the shared part of the parameters only (``labels``, a partition of
  :mod:`fedjax_lab.partition`); the personal part never leaves the client;
* a **server update** (server-based algorithms): an optax transformation of the
  pseudo-gradient ``x - mean_i(x + s_i)``, its state in ``State.server``:
  ``optax.sgd(eta_g)`` is FedAvg's ``x <- x + eta_g mean_i delta_i``, ``optax.adam`` FedAdam.
  It receives the keyword arguments ``client_state`` (the population's persistent state
  after this round), so a server rule may read every client's state (FedSpeed does),
  ``cohort_size``, ``key`` (the round's server stream) and ``validation_losses``
  (``params -> (losses, weights)``, the per-example losses of a candidate model on every
  cohort slot's first batch, flattened, with 0/1 weights for the slots that take part), so
  a server rule may validate what it makes (Fed-LTP's pruning does). Values the server keeps in its state
  can be broadcast to the clients' optimizers (``client_args``: a pruning mask) and
  reported (``server_metrics``).
* **messages**: dense models (``models_sent``), or with ``sparse_messages`` the nonzero
  coordinates of each update as (value, int32 index) pairs (``coordinates_sent``), or
  with ``messages`` (:class:`Messages`, server-based only) whatever the client's local
  optimizers recorded (``messages_sent``): FedKSeed's (seed, scalar) pairs, which the
  server decodes into the mean update and broadcasts, in ``State.communication``, so every
  client rebuilds the new model from them. Traffic inside local steps (split learning's
  activations at the cut) is declared with ``step_messages``.

Per round, with ``S`` the cohort and ``T`` the update transform:

.. math::

  y_i = \\mathrm{Phases}(x_i), \\quad s_i = T(y_i - x_i), \\qquad
  \\text{server: } x \\leftarrow x + \\mathrm{ServerOpt}(-\\tfrac{1}{m}\\textstyle\\sum_{i \\in S} s_i),
  \\qquad \\text{gossip: } x_i \\leftarrow \\sum_j (W^Q)_{ij} (x_j + s_j),

where a server-based client starts from ``x_i = x``. ``order="gossip_then_train"`` (the
decentralized family only) mixes the previous round's models first, then trains.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from fedjax_lab import clients
from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab import partition
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import communication as comm_lib
from fedjax_lab.randomness import Stream
from fedjax_lab.randomness import stream

ORDERS = ("train_then_gossip", "gossip_then_train")
INDEX_BYTES = 4  # a sparse message's int32 coordinate index

StepCounts = Callable[[jax.Array, jax.Array], jax.Array]  # (key, client ids) -> int32[m]


class Persistent(NamedTuple):
    """Per-client state kept across rounds, for every client (sampled or not).

    Attributes:
      init: ``params -> row``, one client's initial state from the initial model.
      optimizer_args: ``(row, start) -> dict``, extra keyword arguments for the client's
        local optimizer this round (``start`` is the model the client starts from).
      update: ``(row, start, trained, sent) -> row``, the row after the round, from the
        model the client started from, the model it trained and the update it sent.
      start: optional ``(row, received) -> params``, the model the client trains from and
        is evaluated with, from its row and the model it received (FedPer's global body
        with the client's own head); None: the received model.
    """

    init: Callable[[Any], Any]
    optimizer_args: Callable[[Any, Any], dict[str, Any]]
    update: Callable[[Any, Any, Any, Any], Any]
    start: Callable[[Any, Any], Any] | None = None


def fixed_step_counts(counts: Any) -> StepCounts:
    """Client ``i`` runs ``counts[i]`` local steps (per phase) every round."""
    counts = jnp.asarray(counts, jnp.int32)
    if counts.ndim != 1 or bool(jnp.any(counts < 1)):
        raise ValueError(f"Expected a 1-D array of step counts >= 1, got {counts!r}.")
    return lambda key, ids: counts[ids]


def uniform_step_counts(low: int, high: int) -> StepCounts:
    """Each round, every client draws its step count uniformly from ``[low, high]``."""
    low = base.check_positive_int("low", low)
    high = base.check_positive_int("high", high)
    if low > high:
        raise ValueError(f"Expected low <= high step counts, got {low} > {high}.")
    return lambda key, ids: jax.vmap(
        lambda i: jax.random.randint(jax.random.fold_in(key, i), (), low, high + 1)
    )(ids).astype(jnp.int32)


class Messages(NamedTuple):
    """What a client sends instead of its model or update, and how the server decodes it.

    Attributes:
      encode: ``(local optimizer states, start, trained) -> message``, a pytree of arrays
        from the final states of the client's phases (a tuple, one per phase), the model it
        started from and the model it trained.
      decode: ``(messages, weights, start, step_scale) -> update``: the mean update of the
        shared part from every slot's message (leaves ``[m, ...]``), the slots' weights
        ``[m]`` (``1 / |S|`` for the clients that take part, 0 for the others), the shared
        part of the model the clients started from, and the round's step multiplier
        (``lr_decay ** round``). The new model is ``start + ServerOpt(update)``; with the
        default server update it is ``start + update``.
    """

    encode: Callable[[tuple, Any, Any], Any]
    decode: Callable[[Any, jax.Array, Any, jax.Array], Any]


class Broadcast(NamedTuple):
    """The last round's decoded messages, as every client receives them (``State.communication``
    of an algorithm with :class:`Messages`): ``decode(messages, weights, start, step_scale)``
    on the previous model rebuilds the new one."""

    messages: Any
    weights: jax.Array
    step_scale: jax.Array


class Cohort(NamedTuple):
    """Which clients take part in a round, in a static number of slots.

    Attributes:
      slots: the static number of client slots per round (batches are sampled for each).
      expected: the expected number of clients taking part.
      sample: ``key -> (ids int32[slots], active bool[slots])``; ids are distinct, and the
        slots that are not active hold clients that do not take part (their work is
        discarded: no update, no persistent-state change, no message).
      varies: whether some slots can be inactive (the cohort size varies).
    """

    slots: int
    expected: float
    sample: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
    varies: bool = False


def fixed_cohort(num_clients: int, cohort_size: int) -> Cohort:
    """m distinct clients, uniformly without replacement, sorted (the cohort stream)."""
    m = base.check_positive_int("clients_per_round", cohort_size)
    if m > num_clients:
        raise ValueError(f"Expected clients_per_round <= num_clients={num_clients}, got {m}.")

    def sample(key):
        ids = jax.random.choice(stream(key, Stream.COHORT), num_clients, (m,), replace=False)
        return jnp.sort(ids).astype(jnp.int32), jnp.ones((m,), bool)

    return Cohort(m, float(m), sample)


def poisson_cohort(num_clients: int, probability: float, slots: int | None = None) -> Cohort:
    """Every client joins independently with probability q (Poisson sampling).

    The cohort size varies; it is padded to ``slots`` (default ``qN + 6 sqrt(qN(1 - q))``,
    rounded up, at most N) with clients that do not take part, marked inactive. The
    probability that more than ``slots`` clients join is then below 1e-9 (those beyond the
    slots would be left out). A round reports the size of the cohort it trained
    (``cohort_size``).
    """
    if not 0 < probability <= 1:
        raise ValueError(f"Expected a sampling probability q in (0, 1], got {probability!r}.")
    mean = probability * num_clients
    if slots is None:
        slots = math.ceil(mean + 6 * math.sqrt(mean * (1 - probability)))
    slots = min(base.check_positive_int("slots", slots), num_clients)

    def sample(key):
        joined = jax.random.bernoulli(stream(key, Stream.COHORT), probability, (num_clients,))
        order = jnp.argsort(~joined, stable=True)  # joined clients first, in id order
        count = jnp.sum(joined)
        return order[:slots].astype(jnp.int32), jnp.arange(slots) < count

    return Cohort(slots, mean, sample, varies=True)


def everyone(num_clients: int) -> Cohort:
    """Every client takes part (the decentralized family)."""
    ids = jnp.arange(num_clients, dtype=jnp.int32)
    return Cohort(num_clients, float(num_clients), lambda key: (ids, jnp.ones(ids.shape, bool)))


def compose(
    loss_fn: local.LossFn,
    *,
    name: str,
    num_clients: int,
    phases: Sequence[local.Phase],
    communication: comm_lib.Communication,
    cohort: Cohort | int | None = None,
    update_transform: optax.GradientTransformation | None = None,
    server_optimizer: optax.GradientTransformation | None = None,
    persistent: Persistent | None = None,
    step_counts: StepCounts | None = None,
    labels: partition.LabelFn | Any = partition.everything_shared,
    order: str = "train_then_gossip",
    lr_decay: float = 1.0,
    strategy: str = "vmap",
    chunk_size: int | None = None,
    unroll: int | bool = 1,
    host_hook: base.HostHook | None = None,
    client_args: Callable[[Any], dict[str, Any]] | None = None,
    server_metrics: Callable[[Any], dict[str, jax.Array]] | None = None,
    sparse_messages: bool = False,
    messages: Messages | None = None,
    step_messages: dict[str, tuple[int, int]] | None = None,
) -> base.Algorithm:
    """An algorithm from its pieces (see the module docstring).

    Args:
      loss_fn: ``(params, batch) -> scalar`` for one client.
      name: the algorithm's name.
      num_clients: N.
      phases: the local phases, in order (:class:`~fedjax_lab.local.Phase`).
      communication: :func:`~fedjax_lab.algorithms.communication.server_mean`,
        :func:`~fedjax_lab.algorithms.communication.gossip` or
        :func:`~fedjax_lab.algorithms.communication.push_sum`.
      cohort: the clients of each round (server-based only; the decentralized family trains
        every client): an int m for :func:`fixed_cohort`, or a :class:`Cohort` such as
        :func:`poisson_cohort`.
      update_transform: optax transformation of each client's update, or None.
      server_optimizer: the server update (server-based only); default ``optax.sgd(1.0)``.
      persistent: per-client state kept across rounds, or None.
      step_counts: per-client local step counts each round, or None (every step).
      labels: the partition of the parameters; only the ``"shared"`` part is communicated.
        Decentralized clients keep their personal part; a server-based algorithm updates only
        the shared part of its global model (per-client personal parts belong in
        ``persistent`` state).
      order: ``"train_then_gossip"`` or ``"gossip_then_train"`` (decentralized only).
      lr_decay: local updates in round t are multiplied by ``lr_decay ** t``.
      strategy, chunk_size: how clients are mapped (see :func:`fedjax_lab.clients.map_clients`).
      unroll: ``lax.scan`` unrolling of the local steps.
      host_hook: host-side work after every round (:class:`~fedjax_lab.algorithms.base.HostHook`).
      client_args: ``server state -> dict``, extra keyword arguments of every client's local
        optimizers this round (what the server broadcasts with the model), or None.
      server_metrics: ``server state after the round -> dict`` of scalar metrics, or None.
      sparse_messages: count what each client sends as its nonzero coordinates, each a
        (value, int32 index) pair: the ``coordinates_sent`` metric and its bytes, for
        sparse updates (pruned models, top-k).
      messages: a :class:`Messages` codec (server-based only): each client sends what it
        encodes, the server decodes the mean update and keeps the :class:`Broadcast` in
        ``State.communication``, and each client of the cohort receives the broadcast (every
        message; the weights follow from their number). ``messages_sent`` counts
        ``|S| (1 + |S|)`` messages, their bytes from the message's shapes.
      step_messages: traffic inside the local steps, ``{metric: (per step, bytes each)}``:
        every step a client runs exchanges ``per step`` messages of ``bytes each`` (split
        learning's activations and gradients at the cut); the metric counts them.

    Returns:
      An :class:`~fedjax_lab.algorithms.base.Algorithm`.
    """
    num_clients = base.check_positive_int("num_clients", num_clients)
    phases = local.check_phases(phases)
    lr_decay = base.check_learning_rate_decay(lr_decay)
    clients.validate_strategy(strategy, chunk_size)
    decentralized = communication.decentralized
    if order not in ORDERS:
        raise ValueError(f"Unknown order {order!r}; expected one of {ORDERS}.")
    if decentralized:
        if cohort is not None:
            raise ValueError(f"{name} is decentralized: every client trains, got cohort={cohort}.")
        if server_optimizer is not None:
            raise ValueError(f"{name} is decentralized: it has no server optimizer.")
        cohort = everyone(num_clients)
    else:
        if not isinstance(cohort, Cohort):
            cohort = fixed_cohort(num_clients, cohort)
        if order != ORDERS[0]:
            raise ValueError(f"order={order!r} applies to decentralized algorithms only.")
    if messages is not None:
        if decentralized:
            raise ValueError(f"{name}: encoded messages are decoded by a server (server_mean).")
        if update_transform is not None or sparse_messages:
            raise ValueError(
                f"{name}: encoded messages replace the update transform and sparse messages."
            )
    step_messages = dict(step_messages or {})
    for metric, (per_step, size) in step_messages.items():
        if isinstance(per_step, bool) or not isinstance(per_step, int) or per_step < 0 or size < 0:
            raise ValueError(
                f"Expected step_messages[{metric!r}] = (messages per step >= 0, bytes >= 0), "
                f"got {(per_step, size)!r}."
            )
    m = cohort.slots
    server_optimizer = optax.with_extra_args_support(server_optimizer or optax.sgd(1.0))
    transform = optax.with_extra_args_support(update_transform) if update_transform else None
    steps_needed = local.phase_steps(phases)
    all_clients = m == num_clients and not cohort.varies  # ids are 0..N-1 in order

    def shared_mask(params):
        return partition.mask(labels, params, partition.SHARED)

    def message_shapes(params):
        def encode_initial(p):
            states = local.initial_states(phases, p, partition.resolve(labels, p))
            return messages.encode(states, p, p)

        return jax.eval_shape(encode_initial, params)

    def init_communication(params):
        if messages is None:
            return communication.init(num_clients)
        zeros = lambda s: jnp.zeros((m, *s.shape), s.dtype)
        return Broadcast(
            jax.tree.map(zeros, message_shapes(params)),
            jnp.zeros((m,), jnp.float32),
            jnp.ones((), jnp.float32),
        )

    def init(params):
        rows = () if persistent is None else persistent.init(params)
        return base.State(
            params=clients.broadcast_to_clients(params, num_clients) if decentralized else params,
            round=jnp.zeros((), jnp.int32),
            server=()
            if decentralized
            else server_optimizer.init(partition.select(params, shared_mask(params))),
            clients=clients.broadcast_to_clients(rows, num_clients),
            communication=init_communication(params),
        )

    def client_update(
        start,
        row,
        batches,
        key,
        privacy_key,
        count,
        *,
        labels_tree,
        keep,
        scale,
        broadcast,
        cohort_size,
    ):
        """One client: local phases from ``start``; returns its trained model, the update it
        sends (None without an update transform: it then sends its shared part as it is),
        its persistent row, and the losses and mask of its steps."""
        if persistent is not None and persistent.start is not None:
            start = persistent.start(row, start)
        result = local.run_phases(
            phases,
            loss_fn,
            start,
            batches,
            key,
            labels=labels_tree,
            step_scale=scale,
            unroll=unroll,
            step_count=count,
            optimizer_args={
                **(persistent.optimizer_args(row, start) if persistent else {}),
                **broadcast,
            },
        )
        trained, delta = result.params, None
        if transform is not None or persistent is not None:
            delta = jax.tree.map(
                jnp.subtract, partition.select(trained, keep), partition.select(start, keep)
            )
        if transform is not None:
            delta, _ = transform.update(
                delta, transform.init(delta), start, key=privacy_key, cohort_size=cohort_size
            )
        if persistent is not None:
            row = persistent.update(row, start, trained, delta)
        if messages is not None:
            delta = messages.encode(result.opt_state, start, trained)
        sent = None if transform is None and messages is None else delta
        return trained, sent, row, result.losses, result.active

    def round_fn(state, mixing, batches, key):
        communication.check_mixing(mixing, num_clients, name)
        base.check_batches(batches, m, steps_needed)
        ids, joined = cohort.sample(key)
        cohort_size = jnp.sum(joined).astype(jnp.int32)
        per_client = (
            state.clients if all_clients else clients.gather(state.clients, ids),
            batches,
            clients.client_keys(stream(key, Stream.TRAIN), ids),
            clients.client_keys(stream(key, Stream.PRIVACY), ids),
            None if step_counts is None else step_counts(stream(key, Stream.STEPS), ids),
        )
        one_model = jax.tree.map(lambda x: x[0], state.params) if decentralized else state.params
        keep = shared_mask(one_model)
        update = functools.partial(
            client_update,
            labels_tree=partition.resolve(labels, one_model),
            keep=keep,
            scale=base.round_step_scale(state.round, lr_decay),
            broadcast=client_args(state.server) if client_args else {},
            cohort_size=cohort_size,
        )
        mapped = {"strategy": strategy, "chunk_size": chunk_size}
        if cohort.varies:  # the loop strategies skip the padding slots (they come last)
            mapped["active"] = joined
        models, comm_state = state.params, state.communication
        if decentralized and order == "gossip_then_train":
            shared, personal = partition.split(models, keep)
            shared, comm_state, models_sent = communication.combine(comm_state, mixing, shared)
            models = partition.merge(shared, personal)
        if decentralized:  # every client starts from its own model
            outputs = clients.map_clients(update, models, *per_client, **mapped)
        else:  # every sampled client starts from the global model
            outputs = clients.map_clients(lambda *a: update(models, *a), *per_client, **mapped)
        trained, delta, rows, losses, active = outputs
        if cohort.varies:  # the padding slots keep their rows
            rows = jax.tree.map(
                lambda new, old: _where_clients(joined, new, old), rows, per_client[0]
            )
        new_clients = rows if all_clients else clients.scatter(state.clients, ids, rows)
        # What each client sends: the shared part of its model, its transformed update, or
        # its encoded message.
        sent = partition.select(trained, keep) if delta is None else delta
        coordinates_sent = _nonzeros_sent(sent, joined) if sparse_messages else None
        new_server = state.server
        if decentralized:
            if transform is not None:  # neighbours receive x_j + T(y_j - x_j)
                sent = jax.tree.map(jnp.add, partition.select(models, keep), delta)
            if order == "train_then_gossip":
                sent, comm_state, models_sent = communication.combine(
                    comm_state, mixing, sent, previous=partition.select(models, keep)
                )
            new_params = partition.merge(sent, partition.split(trained, keep)[1])
        elif messages is not None:
            x, personal = partition.split(models, keep)
            weights = joined.astype(jnp.float32) / jnp.maximum(cohort_size, 1)
            scale = base.round_step_scale(state.round, lr_decay)
            mean = messages.decode(sent, weights, x, scale)
            comm_state = Broadcast(sent, weights, scale)
            models_sent = None
            pseudo_grad = jax.tree.map(jnp.negative, mean)
        else:
            mean, comm_state, models_sent = communication.combine(
                comm_state, None, sent, weights=joined if cohort.varies else None
            )
            x, personal = partition.split(models, keep)
            # The pseudo-gradient x - mean_i(x + s_i): x - mean(y), or -mean(T(delta)).
            pseudo_grad = (
                jax.tree.map(jnp.subtract, x, mean)
                if transform is None
                else jax.tree.map(jnp.negative, mean)
            )
        if not decentralized:
            updates, new_server = server_optimizer.update(
                pseudo_grad,
                state.server,
                x,
                client_state=new_clients,
                cohort_size=cohort_size,
                key=stream(key, Stream.SERVER),
                validation_losses=functools.partial(
                    _validation_losses, loss_fn, personal, batches, joined
                ),
            )
            new_params = partition.merge(optax.apply_updates(x, updates), personal)
        metrics = {
            "train_loss": (
                _mean_active_loss(losses, active & joined[:, None])
                if cohort.varies or step_counts is not None
                else jnp.mean(losses)
            ),
        }
        if messages is None:
            metrics["models_sent"] = models_sent
        else:  # each client sends its message and receives the broadcast of all of them
            metrics["messages_sent"] = cohort_size * (1 + cohort_size)
        ran = active & joined[:, None]
        for metric, (per_step, _) in step_messages.items():
            metrics[metric] = jnp.sum(ran).astype(jnp.int32) * per_step
        if cohort.varies:
            metrics["cohort_size"] = cohort_size
        if sparse_messages:
            metrics["coordinates_sent"] = coordinates_sent
        if server_metrics is not None:
            metrics.update(server_metrics(new_server))
        new_state = base.State(
            params=new_params,
            round=state.round + 1,
            server=new_server,
            clients=new_clients,
            communication=comm_state,
        )
        return new_state, metrics

    def client_params(state):
        if persistent is not None and persistent.start is not None:
            received = state.params
            if decentralized:
                return jax.vmap(persistent.start)(state.clients, received)
            return jax.vmap(persistent.start, in_axes=(0, None))(state.clients, received)
        if decentralized:
            return state.params
        return clients.broadcast_to_clients(state.params, num_clients)

    def message_bytes(params):
        shared = partition.select(params, shared_mask(params))
        steps = {metric: size for metric, (_, size) in step_messages.items()}
        if messages is not None:
            return {"messages_sent": base.model_bytes(message_shapes(params)), **steps}
        if sparse_messages:
            value = max(jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(shared))
            return {"coordinates_sent": value + INDEX_BYTES, **steps}
        return {"models_sent": base.model_bytes(shared) + communication.overhead_bytes, **steps}

    return base.Algorithm(
        name=name,
        num_clients=num_clients,
        cohort_size=m,
        decentralized=decentralized,
        init=init,
        cohort=lambda key: cohort.sample(key)[0],
        round=round_fn,
        client_params=client_params,
        message_bytes=message_bytes,
        local_steps=steps_needed,
        host_hook=host_hook,
        mixing_stochastic=communication.stochastic,
        labels=None if labels is partition.everything_shared else labels,
    )


def _validation_losses(loss_fn, personal, batches, joined, params):
    """Per-example losses of ``params`` on each slot's first batch, flattened, with the 0/1
    weights of the slots that take part."""
    full = partition.merge(params, personal)
    first = jax.tree.map(lambda b: b[:, 0], batches)
    losses = jax.vmap(lambda batch: gradients.per_example_losses(loss_fn, full, batch))(first)
    weights = jnp.broadcast_to(joined[:, None], losses.shape).astype(losses.dtype)
    return losses.ravel(), weights.ravel()


def _nonzeros_sent(sent: Any, joined: jax.Array) -> jax.Array:
    """The nonzero coordinates the clients that take part send, in all."""
    per_client = sum(
        jnp.sum(leaf.reshape(leaf.shape[0], -1) != 0, axis=1) for leaf in jax.tree.leaves(sent)
    )
    return jnp.sum(jnp.where(joined, per_client, 0)).astype(jnp.int32)


def _where_clients(joined: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    return jnp.where(joined.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


def _mean_active_loss(losses: jax.Array, active: jax.Array) -> jax.Array:
    """The mean loss over the steps that ran, of the clients that took part."""
    return jnp.sum(jnp.where(active, losses, 0.0)) / jnp.maximum(jnp.sum(active), 1)
