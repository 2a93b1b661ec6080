"""What every federated algorithm is: a named bundle of pure functions.

An algorithm is built by a factory (``fedavg``, ``decentralized``, ...) that validates its
hyperparameters and closes over them, and returns an :class:`Algorithm` whose functions are
pure and jittable:

* ``init(params) -> state``: the starting state from one model (every client starts there).
* ``cohort(key) -> int32[m]``: the clients that train this round (all of them for the
  decentralized family, ``m`` sampled without replacement for server-based ones). Sample
  the batches for exactly these clients, in this order.
* ``round(state, mixing, batches, key) -> (state, metrics)``: one communication round.
  ``batches`` is a pytree with leaves ``[m, K, ...]`` (K local steps); ``mixing`` is the
  round's mixing matrix (dense ``[N, N]``, :class:`~fedjax_lab.gossip.SparseMixing` or
  :class:`~fedjax_lab.gossip.CirculantMixing`), or
  ``None`` for server-based algorithms. ``metrics`` holds ``train_loss`` (mean over the
  cohort's local steps) and ``models_sent`` (int32: model-sized messages this round;
  multiply by :func:`model_bytes` for bytes).
* ``client_params(state) -> params [N, ...]``: the model each client would be evaluated
  with (its own for decentralized algorithms, the global one for server-based ones).

Randomness: the round key is split into independent streams with ``fold_in`` (cohort
sampling, per-client training keys), and a client's key is ``fold_in(stream, client_id)``,
so results do not depend on the client execution strategy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from fedjax_lab import clients
from fedjax_lab import local

# Independent random streams derived from a round key.
COHORT_STREAM = 0
TRAIN_STREAM = 1


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A federated algorithm as pure functions (see the module docstring).

    Attributes:
      name: the algorithm's name.
      num_clients: N, the size of the client population.
      cohort_size: m, how many clients train in each round.
      decentralized: whether ``round`` consumes a mixing matrix.
      init: ``params -> state``.
      cohort: ``key -> int32[m]`` client ids of the round.
      round: ``(state, mixing, batches, key) -> (state, metrics)``.
      client_params: ``state -> params`` stacked over all N clients.
    """

    name: str
    num_clients: int
    cohort_size: int
    decentralized: bool
    init: Callable[[Any], Any]
    cohort: Callable[[jax.Array], jax.Array]
    round: Callable[..., tuple[Any, dict[str, jax.Array]]]
    client_params: Callable[[Any], Any]


def model_bytes(params: Any) -> int:
    """Bytes needed to send one model (static: from shapes and dtypes)."""
    return sum(int(x.size) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(params))


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, jnp.integer)) or value < 1:
        raise ValueError(f"Expected {name} to be an integer >= 1, got {value!r}.")
    return int(value)


def check_learning_rate_decay(value: float) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"Expected lr_decay in (0, 1], got {value!r}.")
    return float(value)


def round_step_scale(round_index: jax.Array, lr_decay: float) -> jax.Array:
    """The round-level step multiplier ``lr_decay ** round``."""
    return jnp.asarray(lr_decay, jnp.float32) ** round_index.astype(jnp.float32)


def cohort_training(
    loss_fn: local.LossFn,
    optimizer: Any,
    *,
    lr_decay: float,
    strategy: str,
    chunk_size: int | None,
    unroll: int | bool,
) -> Callable[..., local.LocalResult]:
    """Validates the local-training settings and returns the cohort's local training.

    The returned ``train(params, batches, keys, round_index, *, shared_start=False)`` runs
    :func:`fedjax_lab.local.local_train` for every client of a cohort, mapped with the
    client strategy, with the round's step multiplier ``lr_decay ** round_index``.
    ``params`` is stacked over the cohort, or one model every client starts from
    (``shared_start=True``, the server-based algorithms). Returns the stacked
    :class:`~fedjax_lab.local.LocalResult`.
    """
    lr_decay = check_learning_rate_decay(lr_decay)
    clients.validate_strategy(strategy, chunk_size)

    def train(params, batches, keys, round_index, *, shared_start=False):
        scale = round_step_scale(round_index, lr_decay)

        def one(start, batches_i, key_i):
            return local.local_train(
                optimizer, loss_fn, start, batches_i, key_i, step_scale=scale, unroll=unroll
            )

        mapped = {"strategy": strategy, "chunk_size": chunk_size}
        if shared_start:
            return clients.map_clients(lambda b, k: one(params, b, k), batches, keys, **mapped)
        return clients.map_clients(one, params, batches, keys, **mapped)

    return train


def check_batches(batches: Any, cohort_size: int) -> None:
    leaves = jax.tree.leaves(batches)
    if not leaves:
        raise ValueError("Expected a non-empty batches pytree.")
    for leaf in leaves:
        if jnp.ndim(leaf) < 2 or leaf.shape[0] != cohort_size:
            raise ValueError(
                f"Expected batch leaves shaped [cohort={cohort_size}, local_steps, ...], "
                f"got a leaf of shape {jnp.shape(leaf)}."
            )
