"""Gossip averaging of client-stacked pytrees.

Every leaf of the gossiped pytree carries a leading client axis of size ``N``.
One gossip (mixing) step with a mixing matrix ``W`` of shape ``[N, N]``
replaces the value of client ``i`` by a weighted average of its neighbours::

    x_i  <-  sum_j W[i, j] x_j,

applied independently to every leaf and every coordinate. ``steps = Q``
gossip steps apply ``W^Q``.

``W`` can be given in three forms:

* dense: an ``[N, N]`` array, contracted with an einsum;
* sparse: :class:`SparseMixing`, built host-side by :func:`to_sparse`, which gathers
  the at most ``D`` neighbours of every client (``O(N D)`` instead of ``O(N^2)``
  work per coordinate);
* circulant: :class:`CirculantMixing`, built host-side by :func:`to_circulant` when
  ``W[i, j]`` depends only on ``(j - i) mod N`` (ring, exponential graph, complete
  graph): ``x <- sum_d w_d roll(x, -o_d)`` with static offsets ``o_d``. Same work as
  the sparse form on one device; with the client axis split over devices a shift is
  a collective permute of the few boundary clients, where a gather by index makes
  XLA all-gather the whole population first.

All functions here except :func:`to_sparse`, :func:`to_circulant` and
:func:`is_sparse_worthwhile` are jittable.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CirculantMixing",
    "SparseMixing",
    "gossip",
    "is_sparse_worthwhile",
    "mix",
    "num_clients",
    "to_circulant",
    "to_sparse",
]

_HIGHEST = jax.lax.Precision.HIGHEST


class SparseMixing(NamedTuple):
    """Padded neighbour lists of a mixing matrix ``W``.

    Attributes:
      indices: int32 ``[N, D]``; ``indices[i, d]`` is the ``d``-th neighbour ``j`` of
        client ``i`` (``W[i, j] != 0``); rows with fewer than ``D`` neighbours are
        padded with ``i`` itself.
      weights: float32 ``[N, D]``; ``weights[i, d] = W[i, indices[i, d]]`` (0 for padding).
    """

    indices: jax.Array
    weights: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CirculantMixing:
    """A circulant mixing matrix, ``W[i, j] = c[(j - i) mod N]``, by its nonzero offsets.

    One gossip step is ``x_i <- sum_d weights[d] * x_{(i + offsets[d]) mod N}``.

    Attributes:
      weights: float32 ``[D]``; ``weights[d] = c[offsets[d]]``.
      offsets: static, ``D`` distinct offsets in ``[0, N)`` (0 is the client itself).
      num_clients: static ``N``.
    """

    weights: jax.Array
    offsets: tuple[int, ...] = dataclasses.field(metadata={"static": True})
    num_clients: int = dataclasses.field(metadata={"static": True})


def to_circulant(W) -> CirculantMixing | None:
    """The :class:`CirculantMixing` of ``W`` if ``W`` is circulant, else None (host-side).

    Args:
      W: Concrete mixing matrix of shape ``[N, N]``.

    Returns:
      The circulant form when every row is the first row shifted (``W[i, j] = W[0, (j - i)
      mod N]`` exactly), else None.
    """
    W = _as_host_matrix(W)
    n = W.shape[0]
    first = W[0]
    # Circulant iff every row is the previous one shifted right by one (no [N, N] index array).
    if not np.array_equal(W[1:], np.roll(W[:-1], 1, axis=1)):
        return None
    offsets = tuple(int(o) for o in np.flatnonzero(first))
    return CirculantMixing(
        weights=jnp.asarray(first[list(offsets)], dtype=jnp.float32),
        offsets=offsets,
        num_clients=n,
    )


def _as_host_matrix(W) -> np.ndarray:
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"Mixing matrix must be a square 2-D array [N, N], got shape {W.shape}.")
    return W


def to_sparse(W, max_degree: int | None = None) -> SparseMixing:
    """Converts a dense mixing matrix to padded neighbour lists (host-side).

    Args:
      W: Concrete mixing matrix of shape ``[N, N]`` (NumPy or JAX array).
      max_degree: Width ``D`` of the neighbour lists; defaults to the largest
        number of nonzeros in a row of ``W`` (self-loops included). Passing a
        fixed value keeps shapes constant across rounds of a time-varying
        topology (avoiding recompilation).

    Returns:
      A :class:`SparseMixing` with arrays of shape ``[N, D]``.

    Raises:
      ValueError: If ``W`` is not square or ``max_degree`` is smaller than the
        largest row's number of nonzeros.
    """
    W = _as_host_matrix(W)
    n = W.shape[0]
    nonzero = W != 0
    degree = int(nonzero.sum(axis=1).max(initial=0))
    if max_degree is None:
        max_degree = degree
    elif (
        isinstance(max_degree, bool)
        or not isinstance(max_degree, numbers.Integral)
        or max_degree < 0
    ):
        raise ValueError(f"max_degree must be a nonnegative integer, got {max_degree!r}.")
    elif max_degree < degree:
        row = int(np.argmax(nonzero.sum(axis=1)))
        raise ValueError(
            f"max_degree={max_degree} is too small: row {row} of W has {degree} nonzeros."
        )
    # Sort every row's nonzeros first (stable, so by increasing column index);
    # columns beyond N (when max_degree > N) are padding.
    order = np.argsort(~nonzero, axis=1, kind="stable")[:, :max_degree]
    order = np.pad(order, ((0, 0), (0, max_degree - order.shape[1])))
    valid = np.take_along_axis(nonzero, order, axis=1)
    valid[:, n:] = False
    indices = np.where(valid, order, np.arange(n)[:, None])
    weights = np.where(valid, np.take_along_axis(W, order, axis=1), 0.0)
    return SparseMixing(
        indices=jnp.asarray(indices, dtype=jnp.int32),
        weights=jnp.asarray(weights, dtype=jnp.float32),
    )


def is_sparse_worthwhile(W, threshold: float = 0.1) -> bool:
    """Heuristic: whether :class:`SparseMixing` should beat a dense ``W`` (host-side).

    Args:
      W: Concrete mixing matrix of shape ``[N, N]``.
      threshold: Density (fraction of nonzero entries) below which sparse wins.

    Returns:
      True iff the density of ``W`` is below ``threshold``.
    """
    W = _as_host_matrix(W)
    return bool(np.count_nonzero(W) < threshold * W.size)


def _mix_leaf(mixing, x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(
            f"Gossip averages values, so leaves must be floating point; got a leaf of dtype "
            f"{x.dtype} (shape {x.shape}). Remove integer leaves from the tree before mixing."
        )
    n = num_clients(mixing)
    if x.ndim == 0 or x.shape[0] != n:
        raise ValueError(
            f"Every leaf needs a leading client axis of size N={n}, got a leaf of shape {x.shape}."
        )
    if isinstance(mixing, CirculantMixing):
        out = jnp.zeros_like(x, dtype=jnp.result_type(x.dtype, mixing.weights.dtype))
        for d, offset in enumerate(mixing.offsets):
            out = out + mixing.weights[d] * jnp.roll(x, -offset, axis=0)
    elif isinstance(mixing, SparseMixing):
        # One gather per neighbour slot: on XLA:CPU this is several times faster than
        # gathering x[indices] ([N, D, ...]) and reducing over D.
        out = jnp.zeros_like(x, dtype=jnp.result_type(x.dtype, mixing.weights.dtype))
        for d in range(mixing.indices.shape[1]):
            weight = mixing.weights[:, d].reshape((n,) + (1,) * (x.ndim - 1))
            out = out + weight * jnp.take(x, mixing.indices[:, d], axis=0)
    else:
        out = jnp.einsum("ij,j...->i...", mixing, x, precision=_HIGHEST)
    return out.astype(x.dtype)


def num_clients(mixing) -> int:
    """``N`` of a mixing matrix in any of its forms."""
    if isinstance(mixing, CirculantMixing):
        return mixing.num_clients
    if isinstance(mixing, SparseMixing):
        return mixing.weights.shape[0]
    return jnp.shape(mixing)[0]


def _check_mixing(mixing):
    if isinstance(mixing, CirculantMixing):
        if jnp.shape(mixing.weights) != (len(mixing.offsets),):
            raise ValueError(
                f"CirculantMixing needs one weight per offset, got weights of shape "
                f"{jnp.shape(mixing.weights)} for {len(mixing.offsets)} offsets."
            )
        return mixing
    if isinstance(mixing, SparseMixing):
        if mixing.indices.ndim != 2 or mixing.indices.shape != mixing.weights.shape:
            raise ValueError(
                f"SparseMixing needs indices and weights of the same shape [N, D], got "
                f"{mixing.indices.shape} and {mixing.weights.shape}."
            )
        return mixing
    W = jnp.asarray(mixing)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"Mixing matrix must be a square 2-D array [N, N], got shape {W.shape}.")
    return W


def mix(mixing, x: Any) -> Any:
    """One gossip step ``x_i <- sum_j W[i, j] x_j`` on every leaf of ``x``.

    Args:
      mixing: Dense mixing matrix ``W`` of shape ``[N, N]``, a :class:`SparseMixing` or a
        :class:`CirculantMixing`.
      x: An array or pytree of floating-point arrays, each with leading client
        axis of size ``N``.

    Returns:
      The mixed pytree, with the same structure, shapes and dtypes as ``x``.
    """
    mixing = _check_mixing(mixing)
    return jax.tree.map(lambda leaf: _mix_leaf(mixing, leaf), x)


def _matrix_power(W: jax.Array, power: int) -> jax.Array:
    """``W^power`` for a static ``power >= 1`` by repeated squaring."""
    result = None
    while True:
        if power & 1:
            result = W if result is None else jnp.matmul(result, W, precision=_HIGHEST)
        power >>= 1
        if not power:
            return result
        W = jnp.matmul(W, W, precision=_HIGHEST)


def gossip(mixing, tree: Any, steps: int = 1) -> Any:
    """``steps`` gossip steps with the same mixing matrix: ``x <- W^steps x``.

    With a dense ``W`` the power ``W^steps`` is formed first (``O(N^3 log steps)``)
    and applied once, which is cheaper than ``steps`` einsums whenever the
    tree holds more than about ``N`` coordinates per client. With a
    :class:`SparseMixing` or :class:`CirculantMixing` the step is repeated in a
    ``lax.fori_loop``.

    Args:
      mixing: Dense mixing matrix ``W`` of shape ``[N, N]``, a :class:`SparseMixing` or a
        :class:`CirculantMixing`.
      tree: An array or pytree of floating-point arrays with leading client axis ``N``.
      steps: Static number of gossip steps, a Python int >= 1.

    Returns:
      The mixed pytree, with the same structure, shapes and dtypes as ``tree``.
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"gossip needs a static integer steps >= 1, got {steps!r}.")
    mixing = _check_mixing(mixing)
    if isinstance(mixing, (SparseMixing, CirculantMixing)):
        if steps == 1:
            return mix(mixing, tree)
        return jax.lax.fori_loop(0, int(steps), lambda _, t: mix(mixing, t), tree)
    return mix(_matrix_power(mixing, int(steps)), tree)
