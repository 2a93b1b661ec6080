"""Which clients take part in a server round: a static number of slots, sampled per round.

* :func:`fixed_cohort`: ``m`` distinct clients, uniformly without replacement (FedAvg);
* :func:`poisson_cohort`: every client joins independently with probability ``q``
  (Poisson sampling, as the accounting of client-level DP assumes), padded to a static
  number of slots whose extra slots are marked inactive.

The gossip round has no cohort: every client trains every round.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fedjax_lab import validation
from fedjax_lab.randomness import Stream
from fedjax_lab.randomness import stream


class Cohort(NamedTuple):
    """Which clients take part in a round, in a static number of slots.

    Attributes:
      population: N, the number of clients the cohort is drawn from.
      slots: the static number of client slots per round (batches are sampled for each).
      expected: the expected number of clients taking part.
      sample: ``key -> (ids int32[slots], active bool[slots])``; ids are distinct, and the
        slots that are not active hold clients that do not take part (their work is
        discarded: no update, no persistent-state change, no message).
      varies: whether some slots can be inactive (the cohort size varies).
    """

    population: int
    slots: int
    expected: float
    sample: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
    varies: bool = False


def fixed_cohort(num_clients: int, cohort_size: int) -> Cohort:
    """m distinct clients, uniformly without replacement, sorted (the cohort stream)."""
    m = validation.check_positive_int("clients_per_round", cohort_size)
    if m > num_clients:
        raise ValueError(f"Expected clients_per_round <= num_clients={num_clients}, got {m}.")

    def sample(key):
        ids = jax.random.choice(stream(key, Stream.COHORT), num_clients, (m,), replace=False)
        return jnp.sort(ids).astype(jnp.int32), jnp.ones((m,), bool)

    return Cohort(num_clients, m, float(m), sample)


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
    slots = min(validation.check_positive_int("slots", slots), num_clients)

    def sample(key):
        joined = jax.random.bernoulli(stream(key, Stream.COHORT), probability, (num_clients,))
        order = jnp.argsort(~joined, stable=True)  # joined clients first, in id order
        count = jnp.sum(joined)
        return order[:slots].astype(jnp.int32), jnp.arange(slots) < count

    return Cohort(num_clients, slots, mean, sample, varies=True)


def as_cohort(num_clients: int, cohort: Cohort | int) -> Cohort:
    """``cohort`` itself, or :func:`fixed_cohort` of an int ``m``."""
    return cohort if isinstance(cohort, Cohort) else fixed_cohort(num_clients, cohort)


def everyone(num_clients: int) -> Cohort:
    """Every client takes part, in id order (the gossip round)."""
    ids = jnp.arange(num_clients, dtype=jnp.int32)
    everyone_joins = lambda key: (ids, jnp.ones(ids.shape, bool))
    return Cohort(num_clients, num_clients, float(num_clients), everyone_joins)
