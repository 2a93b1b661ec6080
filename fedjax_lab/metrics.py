"""Evaluation metrics of a federated population.

* mean per-client test accuracy: client ``i``'s model on client ``i``'s test split, averaged
  over clients (the number the seed papers report), and its spread (standard deviation)
  across clients; for an algorithm with personal parameters this is the personalized
  accuracy, each client's own ``(u_i, v_i)`` on its own split, also reported under that name;
* accuracy of the averaged model ``xbar = mean_i x_i`` on every client's test split, averaged;
* consensus distance ``(1/N) sum_i ||x_i - xbar||^2``, over the shared part of the
  parameters when there is a personal part (personal parts are meant to differ);
* communication: models sent times :func:`~fedjax_lab.algorithms.communication.model_bytes`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fedjax_lab import clients
from fedjax_lab import objectives
from fedjax_lab import partition


def per_client_accuracy(
    apply_fn: objectives.ApplyFn,
    client_params: Any,
    test: Any,
    execution: clients.Execution = clients.VMAP,
) -> jax.Array:
    """float32 [N]: client i's model on client i's test examples.

    Args:
      apply_fn: ``(params, x) -> logits``.
      client_params: models stacked over N clients.
      test: a ``ClientArrays`` (``x [N, M, ...]``, ``y [N, M]``, ``num_examples [N]``).
      execution: how the clients are mapped (:class:`fedjax_lab.clients.Execution`).
    """

    def one(params, x, y, n):
        return objectives.masked_accuracy(apply_fn, params, x, y, n)

    return execution.map(one, client_params, test.x, test.y, test.num_examples)


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
    execution: clients.Execution = clients.VMAP,
    labels: Any = None,
) -> dict[str, jax.Array]:
    """The evaluation metrics of one population of models.

    Args:
      execution: how the clients are mapped (:class:`fedjax_lab.clients.Execution`).
      labels: the algorithm's partition (``Algorithm.exchange.labels``), or None when every
        parameter is shared.

    Returns:
      ``test_accuracy`` (mean per-client) and ``test_accuracy_std`` (across clients),
      ``averaged_model_accuracy`` and ``consensus_distance``; with a partition,
      ``personalized_accuracy`` and ``personalized_accuracy_std`` too (the same two
      numbers under the name the personalization papers use), and the consensus distance
      is over the shared part.
    """
    n = clients.num_clients(client_params)
    averaged = clients.broadcast_to_clients(clients.client_mean(client_params), n)
    own = per_client_accuracy(apply_fn, client_params, test, execution)
    shared = client_params
    if labels is not None:
        one_model = jax.tree.map(lambda x: x[0], client_params)
        shared = partition.select(client_params, partition.mask(labels, one_model))
    results = {
        "test_accuracy": jnp.mean(own),
        "test_accuracy_std": jnp.std(own),
        "averaged_model_accuracy": jnp.mean(
            per_client_accuracy(apply_fn, averaged, test, execution)
        ),
        "consensus_distance": consensus_distance(shared),
    }
    if labels is not None:
        results["personalized_accuracy"] = results["test_accuracy"]
        results["personalized_accuracy_std"] = results["test_accuracy_std"]
    return results
