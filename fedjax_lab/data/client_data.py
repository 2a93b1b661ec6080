"""Padded per-client example arrays and jittable per-client minibatch sampling."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class ClientArrays(NamedTuple):
    """Per-client examples padded to a common length M.

    Attributes:
      x: float32 [N, M, *input_shape].
      y: int32 [N, M].
      num_examples: int32 [N]; for client i, positions >= num_examples[i] are
        zero padding and are never sampled.
    """

    x: jax.Array
    y: jax.Array
    num_examples: jax.Array


def stack_clients(xs: list[np.ndarray], ys: list[np.ndarray]) -> ClientArrays:
    """Stacks per-client arrays ``xs[i]: [n_i, *input_shape]``, ``ys[i]: [n_i]``.

    Every client is zero-padded to ``M = max_i n_i``. Raises ValueError if the
    lists are empty or mismatched, input shapes differ, or a client has no
    examples.
    """
    if len(xs) != len(ys):
        raise ValueError(f"Got {len(xs)} client inputs but {len(ys)} client label arrays.")
    if not xs:
        raise ValueError("stack_clients needs at least one client, got none.")
    input_shape = np.shape(xs[0])[1:]
    for i, (x, y) in enumerate(zip(xs, ys)):
        if len(x) == 0:
            raise ValueError(f"Client {i} has 0 examples; every client needs at least one.")
        if len(x) != len(y):
            raise ValueError(f"Client {i} has {len(x)} inputs but {len(y)} labels.")
        if np.shape(x)[1:] != input_shape:
            raise ValueError(
                f"Client {i} has input shape {np.shape(x)[1:]}, expected {input_shape} "
                "(the shape of client 0)."
            )
    counts = np.array([len(x) for x in xs], dtype=np.int32)
    m = int(counts.max())
    x_pad = np.zeros((len(xs), m, *input_shape), dtype=np.float32)
    y_pad = np.zeros((len(xs), m), dtype=np.int32)
    for i, (x, y) in enumerate(zip(xs, ys)):
        x_pad[i, : len(x)] = x
        y_pad[i, : len(y)] = y
    return ClientArrays(jnp.asarray(x_pad), jnp.asarray(y_pad), jnp.asarray(counts))


def sample_batches(
    data: ClientArrays,
    client_ids: jax.Array | None,
    key: jax.Array,
    num_steps: int,
    batch_size: int,
) -> dict[str, jax.Array]:
    """Samples ``num_steps`` minibatches for each client in ``client_ids``.

    Rule: client ``c`` draws all its randomness from ``fold_in(key, c)``, so
    its batches do not depend on which other clients are sampled or in what
    order. At each step, independently, with ``n = num_examples[c]``:

    * ``n >= batch_size``: ``batch_size`` distinct indices drawn uniformly from
      ``{0, ..., n-1}`` (top-k of i.i.d. uniform scores, padding scored -1);
    * ``n < batch_size``: ``batch_size`` i.i.d. uniform indices
      ``floor(u * n)`` from ``{0, ..., n-1}`` (with replacement).

    An example may reappear in a later step. Jittable with ``num_steps`` and
    ``batch_size`` static.

    Args:
      data: padded client examples.
      client_ids: int32 [m] client indices into ``data``, or None for every client in
        order (the same batches as ``arange(N)``, without gathering across the client
        axis, which matters when ``data`` is sharded over devices).
      key: PRNG key.
      num_steps: number of minibatches per client.
      batch_size: examples per minibatch.

    Returns:
      ``{"x": [m, num_steps, batch_size, *input_shape],
      "y": [m, num_steps, batch_size]}``.
    """
    max_len = data.y.shape[1]

    def one_client(x, y, n, c):
        u = jax.random.uniform(jax.random.fold_in(key, c), (num_steps, max_len + batch_size))
        idx = jnp.minimum(jnp.floor(u[:, max_len:] * n).astype(jnp.int32), n - 1)
        if batch_size <= max_len:  # otherwise n <= max_len < batch_size always
            scores = jnp.where(jnp.arange(max_len) < n, u[:, :max_len], -1.0)
            idx = jnp.where(n >= batch_size, jax.lax.top_k(scores, batch_size)[1], idx)
        return {"x": x[idx], "y": y[idx]}

    if client_ids is None:  # every client, row by row: no gather across the client axis
        ids = jnp.arange(data.y.shape[0], dtype=jnp.int32)
        return jax.vmap(one_client)(data.x, data.y, data.num_examples, ids)
    ids = jnp.asarray(client_ids, dtype=jnp.int32)
    return jax.vmap(lambda c: one_client(data.x[c], data.y[c], data.num_examples[c], c))(ids)
