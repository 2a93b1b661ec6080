"""Stacked clients: pytrees whose leaves carry a leading client axis.

A population of ``N`` clients is one pytree whose every leaf has shape ``[N, ...]``.
A per-client computation ``fn`` (written for a single client) is mapped over that
axis by :func:`map_clients` with one of three execution strategies:

* ``"vmap"``: all clients at once, ``jax.vmap(fn)``; fastest when memory allows.
* ``"chunked"``: ``chunk_size`` clients at a time, a sequential loop over vmapped chunks
  (``jax.lax.map(..., batch_size=chunk_size)``); bounds peak memory.
* ``"sequential"``: one client at a time (``jax.lax.map``); the least memory.

The strategies compute the same function; they differ only in how XLA schedules it.
Per-client randomness comes from :func:`client_keys`, which folds each client's id into
the round key, so a client's key never depends on the strategy, the chunking or on which
other clients take part in a round.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

STRATEGIES = ("vmap", "chunked", "sequential")


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


def map_clients(
    fn: Callable[..., Any],
    *args: Any,
    strategy: str = "vmap",
    chunk_size: int | None = None,
) -> Any:
    """Maps a single-client function over the leading client axis of ``args``.

    Args:
      fn: a function of one client's arguments (leaves without the client axis).
      *args: pytrees whose leaves all share the same leading client axis ``N``.
      strategy: ``"vmap"``, ``"chunked"`` or ``"sequential"`` (see module docstring).
      chunk_size: clients per chunk, required by (and only allowed with) ``"chunked"``.

    Returns:
      ``fn``'s outputs stacked along a new leading client axis.
    """
    validate_strategy(strategy, chunk_size)
    if strategy == "vmap":
        return jax.vmap(fn)(*args)
    batch_size = int(chunk_size) if strategy == "chunked" else None
    return jax.lax.map(lambda a: fn(*a), args, batch_size=batch_size)


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
