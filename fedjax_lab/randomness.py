"""Every random stream of a run, declared in one place.

A run has one root key (``jax.random.key(config.seed)``); round ``t`` uses
``round_key = fold_in(root, t)``, and every consumer derives its own independent stream
from it with :func:`stream`::

  stream(round_key, Stream.COHORT)      # which clients take part
  stream(round_key, Stream.TRAIN)       # local training (SAM, ZO directions, dropout, ...)
  stream(round_key, Stream.DATA)        # the round's minibatches
  stream(round_key, Stream.PRIVACY)     # noise added to client updates (update transform)
  stream(round_key, Stream.STEPS)       # per-client local step counts drawn each round
  stream(round_key, Stream.SERVER)      # the server update's own noise (Laplace validation)
  stream(root, Stream.INIT)             # the initial model (from the root, not a round)

A client's key within a stream is ``fold_in(stream, client_id)``
(:func:`fedjax_lab.clients.client_keys`), so it depends neither on the client execution
strategy nor on the devices the clients are split over. The data partition, per-client
test sets and random topologies have a seed of their own (``config.data.seed``), so the
same population can be trained with different seeds.
"""

from __future__ import annotations

import enum

import jax


class Stream(enum.IntEnum):
    """The independent random streams of a round (the values are the ``fold_in`` data)."""

    COHORT = 0
    TRAIN = 1
    DATA = 2
    INIT = 3
    PRIVACY = 4
    STEPS = 5
    SERVER = 6


def stream(key: jax.Array, which: Stream) -> jax.Array:
    """The key of stream ``which`` derived from a round (or root) key."""
    return jax.random.fold_in(key, int(which))
