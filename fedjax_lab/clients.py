"""Stacked clients: pytrees whose leaves carry a leading client axis.

A population of ``N`` clients is one pytree whose every leaf has shape ``[N, ...]``.
A per-client computation ``fn`` (written for a single client) is mapped over that
axis by :func:`map_clients` with one of three execution strategies:

* ``"vmap"``: all clients at once, ``jax.vmap(fn)``; fastest on accelerators when memory allows.
* ``"chunked"``: ``chunk_size`` clients at a time, a sequential loop over vmapped chunks
  (``jax.lax.map(..., batch_size=chunk_size)``); bounds peak memory.
* ``"sequential"``: one client at a time (``jax.lax.map``); the least memory.

The strategies compute the same function; they differ only in how XLA schedules it.

Per-client randomness comes from :func:`client_keys`, which folds each client's id into
the round key, so a client's key never depends on the strategy, the chunking or on which
other clients take part in a round.

Sharded clients: given a mesh with a ``"clients"`` axis (``Execution(mesh=...)``, as
:func:`fedjax_lab.sharding.sharded_round` and the experiment runner pass it, or else the
mesh the call is traced under, ``jax.set_mesh``) and ``N`` divisible by that axis, the
mapping runs inside ``jax.shard_map``: every device applies the strategy to its own
``N / D`` clients. Without it, XLA's partitioner cannot split a ``lax.map`` loop over a
sharded axis and would all-gather the clients, so every device would compute every client.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

STRATEGIES = ("vmap", "chunked", "sequential")
CLIENT_AXIS = "clients"


def validate_strategy(strategy: str, chunk_size: int | None) -> None:
    """Raises ValueError unless ``strategy`` and ``chunk_size`` form a valid pair."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown client strategy {strategy!r}; expected one of {STRATEGIES}.")
    if strategy == "chunked":
        if chunk_size is None or int(chunk_size) < 1:
            raise ValueError(f"The 'chunked' strategy needs chunk_size >= 1, got {chunk_size!r}.")
    elif chunk_size is not None:
        raise ValueError(
            f"chunk_size={chunk_size!r} is only used by the 'chunked' strategy, "
            f"got strategy={strategy!r}."
        )


@dataclasses.dataclass(frozen=True)
class Execution:
    """How a round maps its per-client work: a value handed to ``Algorithm.round``.

    The algorithm is built once; how its clients run is chosen per call (the experiment
    runner picks it per backend and memory budget, :mod:`fedjax_lab.runner.execution`), and
    every choice computes the same function.

    Attributes:
      strategy: ``"vmap"``, ``"chunked"`` or ``"sequential"`` (see the module docstring).
      chunk_size: clients per chunk, required by (and only allowed with) ``"chunked"``.
      unroll: ``lax.scan`` unrolling of each client's local steps (unrolling helps
        convolutions on XLA:CPU).
      mesh: a device mesh with a ``"clients"`` axis (:func:`fedjax_lab.sharding.client_mesh`):
        each device maps its own clients. None: the mesh the round is traced under
        (``jax.set_mesh``), if any; without one, every client runs where XLA places it.
    """

    strategy: str = "vmap"
    chunk_size: int | None = None
    unroll: int | bool = 1
    mesh: Any = None

    def __post_init__(self):
        validate_strategy(self.strategy, self.chunk_size)
        if isinstance(self.unroll, bool) or (isinstance(self.unroll, int) and self.unroll >= 1):
            return
        raise ValueError(
            f"Expected unroll to be True, False or an integer >= 1, got {self.unroll!r}."
        )

    def map(self, fn: Callable[..., Any], *args: Any, active: jax.Array | None = None) -> Any:
        """:func:`map_clients` with this strategy."""
        return map_clients(
            fn,
            *args,
            strategy=self.strategy,
            chunk_size=self.chunk_size,
            active=active,
            mesh=self.mesh,
        )


VMAP = Execution()


def map_clients(
    fn: Callable[..., Any],
    *args: Any,
    strategy: str = "vmap",
    chunk_size: int | None = None,
    active: jax.Array | None = None,
    mesh: Any = None,
) -> Any:
    """Maps a single-client function over the leading client axis of ``args``.

    Args:
      fn: a function of one client's arguments (leaves without the client axis).
      *args: pytrees whose leaves all share the same leading client axis ``N``.
      strategy: ``"vmap"``, ``"chunked"`` or ``"sequential"`` (see module docstring).
      chunk_size: clients per chunk, required by (and only allowed with) ``"chunked"``.
      active: optional ``bool[N]``: the loop strategies skip the clients (``"sequential"``)
        or whole chunks (``"chunked"``) that are not active, whose outputs are then zeros
        (the caller discards them); ``"vmap"`` computes every client. A padded Poisson
        cohort puts its inactive slots last, so most of its padding costs nothing.
      mesh: a mesh whose ``"clients"`` axis splits the clients over devices (each maps its
        own inside ``jax.shard_map``); None: the mesh of ``jax.set_mesh``, if any.

    Returns:
      ``fn``'s outputs stacked along a new leading client axis.
    """
    validate_strategy(strategy, chunk_size)

    def local(*local_args):
        if active is not None:
            *local_args, flags = local_args
        if strategy == "vmap":
            return jax.vmap(fn)(*local_args)
        batch_size = int(chunk_size) if strategy == "chunked" else None
        if active is None:
            return jax.lax.map(lambda a: fn(*a), local_args, batch_size=batch_size)
        return _map_skipping(fn, local_args, flags, batch_size or 1)

    mapped = args if active is None else (*args, active)
    ambient = jax.sharding.get_abstract_mesh()
    if mesh is None or _clients_manual(ambient):  # inside shard_map the clients are local
        mesh = ambient
    devices = client_devices(mesh)
    if devices > 1 and num_clients(args) % devices == 0:
        return _map_sharded(local, mapped, mesh)
    return local(*mapped)


def _map_skipping(fn: Callable[..., Any], args: tuple, active: jax.Array, size: int) -> Any:
    """``lax.map`` over chunks of ``size`` clients that skips the chunks with none active
    (the last chunk may be smaller)."""

    def run(chunk_args, flags):
        shapes = jax.eval_shape(jax.vmap(fn), *chunk_args)
        return jax.lax.cond(
            jnp.any(flags),
            lambda: jax.vmap(fn)(*chunk_args),
            lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes),
        )

    n = num_clients(args)
    full = n // size * size
    parts = []
    if full:
        split = lambda x: x[:full].reshape((n // size, size) + x.shape[1:])
        out = jax.lax.map(lambda a: run(*a), (jax.tree.map(split, args), split(active)))
        parts.append(jax.tree.map(lambda x: x.reshape((full,) + x.shape[2:]), out))
    if full < n:
        parts.append(run(jax.tree.map(lambda x: x[full:], args), active[full:]))
    if len(parts) == 1:
        return parts[0]
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), *parts)


def _map_sharded(local: Callable[..., Any], args: tuple, mesh: Any):
    """``local(*args)`` run by every device on its own clients (``jax.shard_map``).

    The mapped function may close over values that are not split over clients (a global
    model every client starts from, say); every device reads them whole. Varying-value checks
    are off (``check_vma=False``): with them on, a gradient taken inside the function with
    respect to such a value would be summed over the devices (the transpose of an implicit
    broadcast), mixing clients. As it is, each client's gradient stays its own (tested
    against the unsharded map). Differentiating *through* ``map_clients`` from outside with
    respect to a closed-over value works with ``"vmap"``; JAX 0.10 rejects it with the loop
    strategies.
    """
    spec = jax.sharding.PartitionSpec(CLIENT_AXIS)
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=spec,
        out_specs=spec,
        axis_names={CLIENT_AXIS},
        check_vma=False,
    )(*args)


def client_devices(mesh: Any) -> int:
    """How many devices the ``"clients"`` axis of ``mesh`` spans (1 when it has none).

    An axis already made manual (inside ``shard_map``) counts as 1: its clients are local.
    """
    if mesh is None or mesh.empty or CLIENT_AXIS not in mesh.axis_names:
        return 1
    return 1 if _clients_manual(mesh) else int(mesh.shape[CLIENT_AXIS])


def _clients_manual(mesh: Any) -> bool:
    if mesh is None or mesh.empty or CLIENT_AXIS not in mesh.axis_names:
        return False
    axis_type = mesh.axis_types[mesh.axis_names.index(CLIENT_AXIS)]
    return axis_type == jax.sharding.AxisType.Manual


def num_clients(tree: Any) -> int:
    """The size of the leading client axis shared by every leaf of ``tree``."""
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "Expected every leaf to share one leading client axis, got leading "
            f"sizes {sorted(map(str, sizes))}."
        )
    return sizes.pop()


def broadcast_to_clients(tree: Any, n: int) -> Any:
    """Copies a single model ``n`` times along a new leading client axis."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), tree)


def client_mean(tree: Any) -> Any:
    """The average over the client axis: ``mean_i x[i]`` for every leaf."""
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), tree)


def client_keys(key: jax.Array, client_ids: jax.Array) -> jax.Array:
    """One PRNG key per client: ``fold_in(key, client_id)`` for each id."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, client_ids)


def gather(tree: Any, client_ids: jax.Array) -> Any:
    """The rows of ``client_ids`` of every leaf of a population's state ``[N, ...]``."""
    return jax.tree.map(lambda x: x[client_ids], tree)


def scatter(tree: Any, client_ids: jax.Array, rows: Any) -> Any:
    """``tree`` with the rows of ``client_ids`` replaced by ``rows`` (the inverse of gather)."""
    return jax.tree.map(lambda x, r: x.at[client_ids].set(r), tree, rows)
