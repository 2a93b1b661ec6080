"""The two round skeletons: a server round and a gossip round, sharing one client update.

Both are built from values, each owning what is specific to it:

* a :class:`~fedjax_lab.algorithms.client.ClientUpdate`: the local phases, an optional
  update transform, persistent per-client state, step counts and the learning-rate decay;
* a :class:`~fedjax_lab.algorithms.communication.Communication`: what a client sends, how
  it is counted and how the messages are combined (server mean, encoded messages, gossip,
  push-sum), on the shared part of the parameters only (``labels``, a partition of
  :mod:`fedjax_lab.partition`); the personal part never leaves the client;
* for the server round, a :class:`ServerRule`: an optax transformation of the
  pseudo-gradient ``x - mean_i(x + s_i)`` (``optax.sgd(eta_g)`` is FedAvg's
  ``x <- x + eta_g mean_i delta_i``, ``optax.adam`` FedAdam), what the server broadcasts to
  the clients' optimizers, what it reports, and whether it validates what it makes on the
  cohort's data; and a :class:`~fedjax_lab.algorithms.cohorts.Cohort`.

Per round, with ``S`` the cohort and ``T`` the update transform:

.. math::

  y_i = \\mathrm{Phases}(x_i), \\quad s_i = T(y_i - x_i), \\qquad
  \\text{server: } x \\leftarrow x + \\mathrm{ServerOpt}(-\\tfrac{1}{m}\\textstyle\\sum_{i \\in S} s_i),
  \\qquad \\text{gossip: } x_i \\leftarrow \\sum_j (W^Q)_{ij} (x_j + s_j),

where a server client starts from ``x_i = x``; without a transform a client sends its
model. The gossip round with ``order="gossip_then_train"`` mixes the previous round's models
first, then trains. How the clients are mapped is not part of the algorithm: ``round``
takes an :class:`~fedjax_lab.clients.Execution` (vmap by default).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedjax_lab import clients
from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab import partition
from fedjax_lab import validation
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import client as client_lib
from fedjax_lab.algorithms import cohorts
from fedjax_lab.algorithms import communication as comm_lib
from fedjax_lab.randomness import Stream
from fedjax_lab.randomness import stream

ORDERS = ("train_then_gossip", "gossip_then_train")


class ServerRule(NamedTuple):
    """What the server does with the cohort's mean (build it with :func:`server_rule`).

    Attributes:
      optimizer: an optax transformation of the pseudo-gradient, its state in
        ``State.server``. It receives the keyword arguments ``client_state`` (the
        population's persistent state after this round: FedSpeed reads every client's),
        ``cohort_size`` and ``key`` (the round's server stream), and with ``validates``
        ``validation_losses``: ``params -> (losses, weights)``, the per-example losses of a
        candidate model on every cohort slot's first batch, flattened, with 0/1 weights
        for the slots that take part (Fed-LTP's pruning validates what it makes).
      broadcast: ``server state -> dict``, keyword arguments of every client's local
        optimizers this round (what the server sends with the model: a pruning mask), or None.
      report: ``server state after the round -> dict`` of scalar metrics, or None.
      validates: whether ``optimizer`` takes ``validation_losses``.
    """

    optimizer: optax.GradientTransformationExtraArgs
    broadcast: Callable[[Any], dict[str, Any]] | None = None
    report: Callable[[Any], dict[str, jax.Array]] | None = None
    validates: bool = False


def server_rule(
    optimizer: optax.GradientTransformation | None = None,
    *,
    broadcast: Callable[[Any], dict[str, Any]] | None = None,
    report: Callable[[Any], dict[str, jax.Array]] | None = None,
    validates: bool = False,
) -> ServerRule:
    """A :class:`ServerRule`; the default optimizer ``optax.sgd(1.0)`` is FedAvg's."""
    optimizer = optax.with_extra_args_support(optimizer or optax.sgd(1.0))
    return ServerRule(optimizer, broadcast, report, bool(validates))


def _check_parts(labels: Any, params: Any) -> None:
    """A partition given explicitly must leave both parts non-empty."""
    if labels is not partition.everything_shared:
        partition.check_both_parts(labels, params)


@dataclasses.dataclass(frozen=True)
class _Round:
    """What both skeletons hold: the loss, the population, the client update, the
    communication piece and the partition."""

    loss_fn: local.LossFn
    name: str
    num_clients: int
    client: client_lib.ClientUpdate
    communication: comm_lib.Communication
    labels: Any

    def keep(self, params: Any) -> Any:
        """The boolean mask of the shared (communicated) part of one model."""
        return partition.mask(self.labels, params, partition.SHARED)

    def context(self, state, one_model, cohort_size, broadcast, execution):
        """What every client of the round shares (a
        :class:`~fedjax_lab.algorithms.client.RoundContext`)."""
        return client_lib.RoundContext(
            labels=partition.resolve(self.labels, one_model),
            keep=self.keep(one_model),
            scale=base.round_step_scale(state.round, self.client.lr_decay),
            broadcast=broadcast,
            cohort_size=cohort_size,
            unroll=execution.unroll,
        )

    def run_clients(
        self, key, ids, rows, batches, context, execution, *, start, mapped, active=None
    ):
        """Every slot's client round, mapped with ``execution``: the personal part of each
        trained model, each message, the rows, losses and step masks. ``start`` is every
        client's own model (``mapped``) or the one they all receive."""
        counts = None
        if self.client.step_counts is not None:
            counts = self.client.step_counts(stream(key, Stream.STEPS), ids)
        train_keys = clients.client_keys(stream(key, Stream.TRAIN), ids)
        privacy_keys = clients.client_keys(stream(key, Stream.PRIVACY), ids)
        personal = jax.tree.map(lambda k: not k, context.keep)

        def one(start, row, batch, train_key, privacy_key, count):
            out = client_lib.run(
                self.client, self.loss_fn, start, row, batch, train_key, privacy_key, count, context
            )
            personal_part = partition.select(out.trained, personal)
            return personal_part, self.message(out), out.row, out.losses, out.active

        per_client = (rows, batches, train_keys, privacy_keys, counts)
        if mapped:
            return execution.map(one, start, *per_client, active=active)
        return execution.map(functools.partial(one, start), *per_client, active=active)

    def metrics(self, losses, active, joined, counts, varies):
        """``train_loss`` over the steps that ran, the message counts and the step traffic."""
        ran = active if joined is None else active & joined[:, None]
        partial = varies or self.client.step_counts is not None
        out = {"train_loss": _mean_active_loss(losses, ran) if partial else jnp.mean(losses)}
        out.update(counts)
        out.update(comm_lib.step_counts(self.communication, jnp.sum(ran)))
        return out

    def message_bytes(self, params: Any) -> dict[str, int]:
        shared = partition.select(params, self.keep(params))
        return self.communication.message_bytes(shared, self.message_shapes(params))

    def message_shapes(self, params: Any) -> Any:
        if self.communication.encode is None:
            return None
        encode = self.communication.encode
        return client_lib.message_shapes(self.client, encode, params, self.labels)

    def algorithm(self, cohort: cohorts.Cohort, host_hook) -> base.Algorithm:
        labels = None if self.labels is partition.everything_shared else self.labels
        return base.Algorithm(
            name=self.name,
            participants=cohort,
            init=self.init,
            round=self.round,
            client_params=self.client_params,
            client_axes=self.client_axes,
            exchange=base.Exchange(self.message_bytes, self.communication.mixing, labels),
            local_steps=self.client.steps,
            host_hook=host_hook,
        )

    def rows(self, params: Any) -> Any:
        """Every client's initial persistent row, stacked (``()`` without persistent state)."""
        persistent = self.client.persistent
        rows = () if persistent is None else persistent.init(params)
        return clients.broadcast_to_clients(rows, self.num_clients)


@dataclasses.dataclass(frozen=True)
class _ServerRound(_Round):
    cohort: cohorts.Cohort
    server: ServerRule

    @property
    def sends_update(self) -> bool:
        return self.client.transform is not None or self.communication.encode is not None

    def message(self, out: client_lib.ClientOutput) -> Any:
        if self.communication.encode is not None:
            return self.communication.encode(out)
        if self.sends_update:
            return out.update
        return partition.select(out.trained, self.keep(out.trained))

    def init(self, params: Any) -> base.State:
        _check_parts(self.labels, params)
        return base.State(
            params=params,
            round=jnp.zeros((), jnp.int32),
            server=self.server.optimizer.init(partition.select(params, self.keep(params))),
            clients=self.rows(params),
            communication=self.communication.init(
                self.num_clients, self.cohort.slots, self.message_shapes(params)
            ),
        )

    def round(self, state, mixing, batches, key, execution=clients.VMAP):
        self.communication.check_mixing(mixing, self.num_clients, self.name)
        base.check_batches(batches, self.cohort.slots, self.client.steps)
        ids, joined = self.cohort.sample(key)
        cohort_size = jnp.sum(joined).astype(jnp.int32)
        server = self.server
        broadcast = server.broadcast(state.server) if server.broadcast else {}
        context = self.context(state, state.params, cohort_size, broadcast, execution)
        everyone = self.cohort.slots == self.num_clients and not self.cohort.varies
        rows = state.clients if everyone else clients.gather(state.clients, ids)
        padded = joined if self.cohort.varies else None
        _, sent, new_rows, losses, active = self.run_clients(
            key, ids, rows, batches, context, execution, start=state.params, mapped=False,
            active=padded,
        )
        if self.cohort.varies:  # the padding slots keep their rows
            new_rows = jax.tree.map(lambda n, o: _where_clients(joined, n, o), new_rows, rows)
        new_clients = new_rows if everyone else clients.scatter(state.clients, ids, new_rows)
        x, personal = partition.split(state.params, context.keep)
        mean, comm_state, counts = self.communication.combine(
            state.communication, mixing, sent, joined=padded, start=x, scale=context.scale
        )
        # The pseudo-gradient x - mean_i(x + s_i): -mean(s), or -(mean(y) - x).
        update = mean if self.sends_update else jax.tree.map(jnp.subtract, mean, x)
        extra = dict(
            client_state=new_clients, cohort_size=cohort_size, key=stream(key, Stream.SERVER)
        )
        if server.validates:
            extra["validation_losses"] = functools.partial(
                _validation_losses, self.loss_fn, personal, batches, joined
            )
        pseudo_grad = jax.tree.map(jnp.negative, update)
        updates, new_server = server.optimizer.update(pseudo_grad, state.server, x, **extra)
        metrics = self.metrics(losses, active, joined, counts, self.cohort.varies)
        if self.cohort.varies:
            metrics["cohort_size"] = cohort_size
        if server.report is not None:
            metrics.update(server.report(new_server))
        new_params = partition.merge(optax.apply_updates(x, updates), personal)
        return base.State(new_params, state.round + 1, new_server, new_clients, comm_state), metrics

    def client_params(self, state: base.State) -> Any:
        persistent = self.client.persistent
        if persistent is not None and persistent.start is not None:
            return jax.vmap(persistent.start, in_axes=(0, None))(state.clients, state.params)
        return clients.broadcast_to_clients(state.params, self.num_clients)

    def client_axes(self, state: base.State) -> base.State:
        return _client_axes(state, params=False, communication=self.communication.client_axis)


def server_round(
    loss_fn: local.LossFn,
    *,
    name: str,
    num_clients: int,
    client: client_lib.ClientUpdate,
    cohort: cohorts.Cohort | int,
    communication: comm_lib.Communication | None = None,
    server: ServerRule | None = None,
    labels: partition.LabelFn | Any = partition.everything_shared,
    host_hook: base.HostHook | None = None,
) -> base.Algorithm:
    """A server round: a cohort trains from the global model, the server combines.

    Args:
      loss_fn: ``(params, batch) -> scalar`` for one client.
      name: the algorithm's name.
      num_clients: N.
      client: the :class:`~fedjax_lab.algorithms.client.ClientUpdate`.
      cohort: an int m for :func:`~fedjax_lab.algorithms.cohorts.fixed_cohort`, or a
        :class:`~fedjax_lab.algorithms.cohorts.Cohort` (Poisson sampling).
      communication: a server piece (mixing None); default
        :func:`~fedjax_lab.algorithms.communication.server_mean`.
      server: the :class:`ServerRule`; default :func:`server_rule` (FedAvg's).
      labels: the partition; the server updates only the shared part of its model (per-client
        personal parts belong in the client's persistent state).
      host_hook: host-side work after every round (:class:`~fedjax_lab.algorithms.base.HostHook`).
    """
    num_clients = validation.check_positive_int("num_clients", num_clients)
    communication = communication or comm_lib.server_mean()
    _check_pieces(client, communication, name, server_side=True)
    cohort = cohorts.as_cohort(num_clients, cohort)
    skeleton = _ServerRound(
        loss_fn, name, num_clients, client, communication, labels, cohort, server or server_rule()
    )
    return skeleton.algorithm(cohort, host_hook)


@dataclasses.dataclass(frozen=True)
class _GossipRound(_Round):
    order: str

    def message(self, out: client_lib.ClientOutput) -> Any:
        """Neighbours receive ``y_j``, or ``x_j + T(y_j - x_j)`` with a transform."""
        keep = self.keep(out.trained)
        if self.client.transform is None:
            return partition.select(out.trained, keep)
        return jax.tree.map(jnp.add, partition.select(out.start, keep), out.update)

    def init(self, params: Any) -> base.State:
        _check_parts(self.labels, params)
        return base.State(
            params=clients.broadcast_to_clients(params, self.num_clients),
            round=jnp.zeros((), jnp.int32),
            clients=self.rows(params),
            communication=self.communication.init(self.num_clients, self.num_clients, None),
        )

    def round(self, state, mixing, batches, key, execution=clients.VMAP):
        self.communication.check_mixing(mixing, self.num_clients, self.name)
        base.check_batches(batches, self.num_clients, self.client.steps)
        one_model = jax.tree.map(lambda x: x[0], state.params)
        cohort_size = jnp.int32(self.num_clients)
        context = self.context(state, one_model, cohort_size, {}, execution)
        combine = functools.partial(
            self.communication.combine, mixing=mixing, joined=None, scale=context.scale
        )
        models, comm_state = state.params, state.communication
        if self.order == "gossip_then_train":
            shared, personal = partition.split(models, context.keep)
            shared, comm_state, counts = combine(comm_state, messages=shared, start=None)
            models = partition.merge(shared, personal)
        ids = jnp.arange(self.num_clients, dtype=jnp.int32)
        personal, sent, rows, losses, active = self.run_clients(
            key, ids, state.clients, batches, context, execution, start=models, mapped=True
        )
        if self.order == "train_then_gossip":
            previous = partition.select(models, context.keep)
            sent, comm_state, counts = combine(comm_state, messages=sent, start=previous)
        metrics = self.metrics(losses, active, None, counts, False)
        new_state = state._replace(
            params=partition.merge(sent, personal),
            round=state.round + 1,
            clients=rows,
            communication=comm_state,
        )
        return new_state, metrics

    def client_params(self, state: base.State) -> Any:
        persistent = self.client.persistent
        if persistent is not None and persistent.start is not None:
            return jax.vmap(persistent.start)(state.clients, state.params)
        return state.params

    def client_axes(self, state: base.State) -> base.State:
        return _client_axes(state, params=True, communication=self.communication.client_axis)


def gossip_round(
    loss_fn: local.LossFn,
    *,
    name: str,
    num_clients: int,
    client: client_lib.ClientUpdate,
    communication: comm_lib.Communication | None = None,
    order: str = "train_then_gossip",
    labels: partition.LabelFn | Any = partition.everything_shared,
    host_hook: base.HostHook | None = None,
) -> base.Algorithm:
    """A gossip round: every client trains its own model and mixes with its neighbours.

    Args:
      loss_fn: ``(params, batch) -> scalar`` for one client.
      name: the algorithm's name.
      num_clients: N; every client trains every round.
      client: the :class:`~fedjax_lab.algorithms.client.ClientUpdate`.
      communication: a gossip piece, :func:`~fedjax_lab.algorithms.communication.gossip`
        (the default, one step) or :func:`~fedjax_lab.algorithms.communication.push_sum`.
      order: ``"train_then_gossip"`` or ``"gossip_then_train"`` (mix the previous round's
        models first, then train: the released DFedSAM code's order).
      labels: the partition; only the shared part is mixed, each client keeps its own
        personal part.
      host_hook: host-side work after every round.
    """
    num_clients = validation.check_positive_int("num_clients", num_clients)
    communication = communication or comm_lib.gossip(1)
    _check_pieces(client, communication, name, server_side=False)
    if order not in ORDERS:
        raise ValueError(f"Unknown order {order!r}; expected one of {ORDERS}.")
    skeleton = _GossipRound(loss_fn, name, num_clients, client, communication, labels, order)
    return skeleton.algorithm(cohorts.everyone(num_clients), host_hook)


def _check_pieces(client, communication, name: str, *, server_side: bool) -> None:
    if not isinstance(client, client_lib.ClientUpdate):
        raise ValueError(
            f"{name}: expected a ClientUpdate (algorithms.client_update), got "
            f"{type(client).__name__}."
        )
    if (communication.mixing is None) != server_side:
        kind = "a server piece (server_mean, encoded)" if server_side else "gossip or push_sum"
        raise ValueError(f"{name}: this round combines with {kind}; got another kind of piece.")
    if communication.encode is not None and client.transform is not None:
        raise ValueError(f"{name}: encoded messages replace the update transform.")


def _client_axes(state: base.State, *, params: bool, communication: bool) -> base.State:
    """Which leaves of ``state`` carry the client axis."""
    flag = lambda value: (lambda tree: jax.tree.map(lambda _: value, tree))
    return base.State(
        params=flag(params)(state.params),
        round=False,
        server=flag(False)(state.server),
        clients=flag(True)(state.clients),
        communication=flag(communication)(state.communication),
    )


def _validation_losses(loss_fn, personal, batches, joined, params):
    """Per-example losses of ``params`` on each slot's first batch, flattened, with the 0/1
    weights of the slots that take part."""
    full = partition.merge(params, personal)
    first = jax.tree.map(lambda b: b[:, 0], batches)
    losses = jax.vmap(lambda batch: gradients.per_example_losses(loss_fn, full, batch))(first)
    weights = jnp.broadcast_to(joined[:, None], losses.shape).astype(losses.dtype)
    return losses.ravel(), weights.ravel()


def _where_clients(joined: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    return jnp.where(joined.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


def _mean_active_loss(losses: jax.Array, active: jax.Array) -> jax.Array:
    """The mean loss over the steps that ran, of the clients that took part."""
    return jnp.sum(jnp.where(active, losses, 0.0)) / jnp.maximum(jnp.sum(active), 1)
