"""Evaluation metrics of a federated population.

* mean per-client test accuracy: client ``i``'s model on client ``i``'s test split, averaged
  over clients (the number the seed papers report);
* accuracy of the averaged model ``xbar = mean_i x_i`` on every client's test split, averaged;
* consensus distance ``(1/N) sum_i ||x_i - xbar||^2``;
* communication: models sent times :func:`~fedjax_lab.algorithms.base.model_bytes`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fedjax_lab import clients
from fedjax_lab import objectives


def per_client_accuracy(
    apply_fn: objectives.ApplyFn,
    client_params: Any,
    test: Any,
    *,
    strategy: str = "vmap",
    chunk_size: int | None = None,
) -> jax.Array:
    """float32 [N]: client i's model on client i's test examples.

    Args:
      apply_fn: ``(params, x) -> logits``.
      client_params: models stacked over N clients.
      test: a ``ClientArrays`` (``x [N, M, ...]``, ``y [N, M]``, ``num_examples [N]``).
    """

    def one(params, x, y, n):
        return objectives.masked_accuracy(apply_fn, params, x, y, n)

    return clients.map_clients(
        one,
        client_params,
        test.x,
        test.y,
        test.num_examples,
        strategy=strategy,
        chunk_size=chunk_size,
    )


def consensus_distance(client_params: Any) -> jax.Array:
    """``(1/N) sum_i ||x_i - xbar||_2^2`` over the whole pytree."""
    mean = clients.client_mean(client_params)
    sq = [
        jnp.sum(jnp.square(x - m).reshape(x.shape[0], -1), axis=1)
        for x, m in zip(jax.tree.leaves(client_params), jax.tree.leaves(mean))
    ]
    return jnp.mean(sum(sq))


def evaluate(
    apply_fn: objectives.ApplyFn,
    client_params: Any,
    test: Any,
    *,
    strategy: str = "vmap",
    chunk_size: int | None = None,
) -> dict[str, jax.Array]:
    """The evaluation metrics of one population of models.

    Returns:
      ``test_accuracy`` (mean per-client), ``averaged_model_accuracy`` and
      ``consensus_distance``.
    """
    n = clients.num_clients(client_params)
    averaged = clients.broadcast_to_clients(clients.client_mean(client_params), n)
    kwargs = dict(strategy=strategy, chunk_size=chunk_size)
    return {
        "test_accuracy": jnp.mean(per_client_accuracy(apply_fn, client_params, test, **kwargs)),
        "averaged_model_accuracy": jnp.mean(
            per_client_accuracy(apply_fn, averaged, test, **kwargs)
        ),
        "consensus_distance": consensus_distance(client_params),
    }
