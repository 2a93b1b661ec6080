"""The client axis sharded over a device mesh: one round across many devices and hosts.

The model is deliberately small. A round (:mod:`fedjax_lab.algorithms.base`) is written over
the whole population, with every per-client quantity stacked on a leading client axis
``[N, ...]``. To run it on ``D`` devices we only choose *layouts*:

* every leaf with a client axis (decentralized ``state.params``, per-client data, the round's
  batches ``[m, K, ...]``) is split along that axis: ``NamedSharding(mesh, P("clients"))``,
  so each device holds ``N / D`` clients. Which leaves of an algorithm's state carry the
  client axis, the algorithm declares (``Algorithm.client_axes``, :func:`state_shardings`);
  nothing is guessed from shapes;
* everything else (the mixing matrix in any of its forms, the global model of a
  server-based algorithm, round counters, PRNG keys) is replicated:
  ``NamedSharding(mesh, P())``.

The round itself is unchanged and jitted with those input and output shardings, its
execution value carrying the mesh (``Execution(mesh=mesh)``). With it,
:func:`fedjax_lab.clients.map_clients` runs the
per-client work inside ``jax.shard_map``, each device looping over its own ``N / D`` clients
with the chosen strategy (XLA's partitioner alone would all-gather the clients of a
``lax.map`` loop and have every device compute all of them); XLA inserts the communication
the rest of the math needs. Gossip reads other devices' clients. With a
:class:`~fedjax_lab.gossip.CirculantMixing` (ring, exponential graph) every shift
``roll(x, -o)`` becomes a collective permute of the ``o`` boundary clients per device; a
dense ``einsum("ij,j...", W, x)`` or a :class:`~fedjax_lab.gossip.SparseMixing` gather by
index makes XLA all-gather every client-stacked model leaf (``[N, ...]`` per device) first
(at N = 10000 on 2 CPU devices: 2.1 s for a sparse ring step, 0.66 s for the circulant one).
FedAvg's mean over the cohort becomes a cross-device reduction.

The client mapping is the one place written with ``shard_map``; elsewhere a sharding is a
layout, never a change of the function computed, and per-client randomness is
``fold_in(key, client_id)``, whose value does not depend on the device a client lives on.

Results equal the one-device round up to float rounding, not always bitwise: XLA:CPU picks
reduction orders by shape, so a per-client reduction (SAM's gradient norm) over a device's
``N / D`` clients can round differently from the same reduction over all ``N``, and a mean
across devices sums in the collective's order. Gossip itself reproduces bitwise.

Multi-host: with ``jax.distributed.initialize`` every process runs the same program, builds
the same global :func:`client_mesh` over all processes' devices, and calls the same jitted
round. Inputs must be global arrays. The functions here build them under one assumption:
**every process holds the same full host value** (compute data, models and keys
deterministically from the same seeds). Each process then keeps only the shards of its own
devices (:func:`jax.make_array_from_callback`). Results come back to NumPy on every process
with :func:`to_host` (an all-gather across processes for split leaves, so every process must
call it, in the same order).

Typical use::

    mesh = sharding.client_mesh()
    round_fn = sharding.sharded_round(algorithm, mesh)
    state = sharding.shard_clients(algorithm.init(params), mesh, num_clients=N)
    mixing = sharding.replicate(mixing, mesh)
    state, metrics = round_fn(state, mixing, batches, key)
    fingerprint = fingerprints.params_fingerprint(sharding.to_host(state.params))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fedjax_lab import clients
from fedjax_lab.clients import CLIENT_AXIS

__all__ = [
    "CLIENT_AXIS",
    "client_mesh",
    "client_shardings",
    "constrain",
    "place",
    "replicate",
    "shard_clients",
    "sharded_round",
    "state_shardings",
    "to_host",
]


def client_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh over ``devices`` whose single axis, ``"clients"``, carries the clients.

    Args:
      devices: the devices to use, in mesh order; by default ``jax.devices()``, which in a
        multi-process run are the global devices of every process.

    Returns:
      A :class:`jax.sharding.Mesh` of shape ``(len(devices),)``.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("client_mesh needs at least one device, got an empty list.")
    return Mesh(np.asarray(devices, dtype=object), (CLIENT_AXIS,))


def _axis_name(mesh: Mesh) -> str:
    if not isinstance(mesh, Mesh) or tuple(mesh.axis_names) != (CLIENT_AXIS,):
        raise ValueError(
            f"Expected a 1-D jax.sharding.Mesh with the axis {CLIENT_AXIS!r} (see client_mesh), "
            f"got {mesh!r}."
        )
    return CLIENT_AXIS


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _check_divisible(path: Any, shape: tuple[int, ...], mesh: Mesh) -> None:
    n, devices = shape[0], mesh.size
    if n % devices:
        suggestion = -(-n // devices) * devices
        raise ValueError(
            f"Cannot shard the leaf {jax.tree_util.keystr(path) or '<root>'} of shape {shape} "
            f"over its client axis: {n} clients are not divisible by the {devices} devices of "
            f"the mesh. Use a multiple of {devices} clients (e.g. {suggestion}) or a mesh over "
            f"a number of devices that divides {n}."
        )


def client_shardings(tree: Any, mesh: Mesh, num_clients: int | None = None) -> Any:
    """The sharding of every leaf of ``tree``: split over clients or replicated.

    Args:
      tree: a pytree of arrays (or of ``jax.ShapeDtypeStruct``); only shapes are read.
      mesh: a 1-D mesh (:func:`client_mesh`).
      num_clients: ``None``: every leaf has a leading client axis and is split over the mesh.
        An int ``N``: leaves whose leading axis has size ``N`` are split, all others are
        replicated (for mixed trees such as an algorithm state holding ``params [N, ...]``
        and a scalar round counter). The rule reads shapes only: a global-model leaf whose
        first dimension happens to equal ``N`` is split too, which costs communication but
        never changes results.

    Returns:
      A pytree of :class:`~jax.sharding.NamedSharding` with the structure of ``tree``.

    Raises:
      ValueError: a leaf that must be split has no leading axis, or a client axis not
        divisible by the number of devices.
    """
    axis = _axis_name(mesh)
    split, replicated = NamedSharding(mesh, P(axis)), NamedSharding(mesh, P())
    if num_clients is not None:
        if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
            raise ValueError(f"Expected num_clients to be an integer >= 1, got {num_clients!r}.")

    def one(path, leaf):
        shape = tuple(np.shape(leaf))
        if num_clients is None:
            if not shape:
                raise ValueError(
                    f"Expected every leaf to have a leading client axis, got a scalar at "
                    f"{jax.tree_util.keystr(path) or '<root>'}; replicate it instead."
                )
        elif not shape or shape[0] != num_clients:
            return replicated
        _check_divisible(path, shape, mesh)
        return split

    return jax.tree_util.tree_map_with_path(one, tree)


def state_shardings(algorithm: Any, state: Any, mesh: Mesh) -> Any:
    """The sharding of every leaf of ``algorithm``'s ``state``: split over clients where
    the algorithm declares a client axis (``algorithm.client_axes(state)``), replicated
    elsewhere.

    Raises:
      ValueError: a leaf with a client axis not divisible by the number of devices.
    """
    axis = _axis_name(mesh)
    split, replicated = NamedSharding(mesh, P(axis)), NamedSharding(mesh, P())

    def one(path, leaf, has_clients):
        if not has_clients:
            return replicated
        _check_divisible(path, tuple(np.shape(leaf)), mesh)
        return split

    return jax.tree_util.tree_map_with_path(one, state, algorithm.client_axes(state))


def _place(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """``leaf`` as a global array with ``sharding``, assuming every process holds its value."""
    if isinstance(leaf, jax.Array):
        if leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
            return leaf
        if not leaf.is_fully_addressable or leaf.sharding.device_set == sharding.device_set:
            # Already spread over the mesh (or global): an on-device change of layout.
            return jax.device_put(leaf, sharding)
        if _is_key(leaf):
            if sharding.is_fully_addressable:
                return jax.device_put(leaf, sharding)
            # Typed keys cannot be built from host buffers: place their raw data instead.
            data = _place(np.asarray(jax.random.key_data(leaf)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        # Elsewhere (one device, say): through the host. On-device slicing into shards would
        # compile a program per leaf shape, and the multi-process path needs host data anyway.
    host = np.asarray(leaf)
    host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
    if sharding.is_fully_addressable:
        return jax.device_put(host, sharding)
    # Multi-process: this process builds only its own devices' shards, sliced from the full
    # host value that every process holds.
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def place(tree: Any, shardings: Any) -> Any:
    """Places every leaf of ``tree`` with its sharding (a pytree of the same structure, as
    :func:`state_shardings` gives); as for :func:`shard_clients`, every process of a
    multi-process run passes the same full value."""
    return jax.tree.map(_place, tree, shardings)


def shard_clients(tree: Any, mesh: Mesh, num_clients: int | None = None) -> Any:
    """Places ``tree`` on ``mesh`` with its client axis split over the devices.

    Leaves may be NumPy arrays, scalars or JAX arrays on any device; a leaf already laid out
    as wanted is returned as is, one already on the mesh's devices is re-laid out on device,
    and any other goes through host memory once (so place data once, before the round loop,
    and sample batches inside the jitted round where possible). In a multi-process run every
    process must pass the same full value (each keeps only its own devices' shards).

    Args:
      tree: a pytree of arrays.
      mesh: a 1-D mesh (:func:`client_mesh`).
      num_clients: which leaves to split (see :func:`client_shardings`); ``None`` splits
        every leaf.

    Returns:
      ``tree`` as global :class:`jax.Array` leaves.
    """
    return jax.tree.map(_place, tree, client_shardings(tree, mesh, num_clients))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` whole on every device of ``mesh`` (mixing, keys, models).

    In a multi-process run every process must pass the same value.
    """
    replicated = NamedSharding(mesh, P())
    return jax.tree.map(lambda leaf: _place(leaf, replicated), tree)


def constrain(tree: Any, mesh: Mesh, num_clients: int | None = None) -> Any:
    """Inside ``jit``: asks XLA for the layout of :func:`client_shardings` on ``tree``.

    Use it on values computed inside a jitted function (for instance batches sampled on
    device) so that they are split over clients from the start.
    """
    return jax.lax.with_sharding_constraint(tree, client_shardings(tree, mesh, num_clients))


def sharded_round(
    algorithm: Any, mesh: Mesh, execution: clients.Execution = clients.VMAP
) -> Callable[..., Any]:
    """``algorithm.round`` jitted with its client axis split over ``mesh``.

    Layouts: the state leaves the algorithm declares per client (``client_axes``) are split
    over clients and the rest of the state is replicated; the batches ``[m, K, ...]`` are
    split when the cohort size ``m`` is divisible by the number of devices and replicated
    otherwise (every device then holds the whole cohort's batches); mixing, key and metrics
    are replicated. A server-based algorithm whose ``N`` is not divisible keeps its state
    replicated. The new state has the layout of the state passed in, so rounds chain without
    recompiling.

    Inputs are placed first (:func:`shard_clients`, :func:`replicate`; a no-op for inputs
    already laid out), so host arrays and single-device arrays are accepted too. In a
    multi-process run every process calls the returned function with the same values.

    Args:
      algorithm: any :class:`~fedjax_lab.algorithms.base.Algorithm`.
      mesh: a 1-D mesh (:func:`client_mesh`).
      execution: how each device maps its clients (:class:`fedjax_lab.clients.Execution`).

    Returns:
      ``round(state, mixing, batches, key) -> (state, metrics)``, same as
      ``algorithm.round``.

    Raises:
      ValueError: a decentralized algorithm's ``N`` is not divisible by the mesh size.
    """
    _axis_name(mesh)
    n, m = algorithm.num_clients, algorithm.cohort_size
    if algorithm.decentralized and n % mesh.size:
        raise ValueError(
            f"{algorithm.name} keeps one model per client, and its {n} clients are not "
            f"divisible by the {mesh.size} devices of the mesh; use a multiple of {mesh.size} "
            f"clients (e.g. {-(-n // mesh.size) * mesh.size}) or fewer devices."
        )
    replicated = NamedSharding(mesh, P())
    everywhere = lambda tree: jax.tree.map(lambda _: replicated, tree)
    execution = dataclasses.replace(execution, mesh=mesh)  # each device maps its own clients
    compiled: dict[Any, Any] = {}

    def layouts(state, mixing, batches, key):
        return (
            state_shardings(algorithm, state, mesh) if n % mesh.size == 0 else everywhere(state),
            everywhere(mixing),
            client_shardings(batches, mesh, m) if m % mesh.size == 0 else everywhere(batches),
            replicated,
        )

    def round_fn(state, mixing, batches, key):
        shardings = layouts(state, mixing, batches, key)
        args = jax.tree.map(_place, (state, mixing, batches, key), shardings)
        signature = jax.tree.structure(args), tuple(jax.tree.leaves(shardings))
        if signature not in compiled:
            compiled[signature] = (
                jax.jit(
                    functools.partial(algorithm.round, execution=execution),
                    in_shardings=shardings,
                    out_shardings=(shardings[0], replicated),
                )
                .lower(*args)
                .compile()
            )
        return compiled[signature](*args)

    return round_fn


def to_host(tree: Any) -> Any:
    """Every leaf of ``tree`` as a full NumPy array, on every process.

    Multi-process: leaves split over several processes are all-gathered
    (:func:`jax.experimental.multihost_utils.process_allgather`), a collective that every
    process must run, in the same order; replicated leaves are read from a local copy.
    Typed PRNG keys come back as their raw key data.
    """

    def one(leaf):
        if _is_key(leaf):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if leaf.is_fully_replicated:
                return np.asarray(leaf.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree.map(one, tree)
