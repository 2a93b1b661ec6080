"""Communication topologies for decentralized (gossip) learning.

A topology over ``N`` clients is described by mixing matrices ``W_t`` of shape
``[N, N]``, one per communication round ``t``. Row ``i`` holds the weights that
client ``i`` gives to the others in one gossip step::

    x_i  <-  sum_j W_t[i, j] x_j.

Every topology here includes self-loops (``W_t[i, i] > 0``) and every ``W_t``
is entrywise nonnegative and

* ``"doubly"`` stochastic: ``W 1 = 1`` and ``1^T W = 1^T`` (gossip preserves
  the average of the clients and converges to it),
* ``"row"`` stochastic: ``W 1 = 1`` (every client takes a convex combination of
  the values it receives), or
* ``"column"`` stochastic: ``1^T W = 1^T`` (the total mass is preserved, as in
  push-sum).

Column ``j`` holds what client ``j`` sends. A graph is *directed* when its edge
pattern (``W[i, j] > 0``, ``i != j``) is not symmetric: client ``i`` may listen
to ``j`` without ``j`` listening to ``i``. Algorithms need different kinds:
plain gossip needs row stochastic ``W`` (each client takes a convex
combination), push-sum needs column stochastic ``W`` (the mass each client
sends sums to one), and a doubly stochastic ``W`` serves both; see
:func:`check_stochastic`.

The mixing speed of a static doubly stochastic ``W`` is measured by its
spectral gap ``1 - lambda`` with ``lambda = ||W - 11^T / N||_2`` (largest
singular value): after ``q`` gossip steps the distance to consensus shrinks by
at least ``lambda^q``. For a row or column (not doubly) stochastic ``W`` the
rate is governed instead by the second-largest eigenvalue modulus
``|lambda_2|`` (:func:`second_eigenvalue_modulus`).

All computations here are host-side NumPy in float64; :meth:`Topology.matrix`
returns float32 arrays ready to be handed to JAX (see ``fedjax_lab.gossip``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable

import numpy as np

from fedjax_lab import validation

__all__ = [
    "Topology",
    "available_topologies",
    "check_stochastic",
    "default_erdos_renyi_p",
    "directed_ring",
    "erdos_renyi",
    "exponential",
    "from_matrix",
    "fully_connected",
    "is_connected",
    "make_topology",
    "one_peer_exponential",
    "random_in_neighbours",
    "random_out_neighbours",
    "ring",
    "satisfies",
    "second_eigenvalue_modulus",
    "spectral_gap",
    "torus",
    "validate_mixing_matrix",
]

_STOCHASTIC_KINDS = ("doubly", "row", "column")


@dataclasses.dataclass(frozen=True, eq=False)
class Topology:
    """A (possibly time-varying) communication topology over ``num_clients``.

    Build instances with the builders of this module (:func:`ring`,
    :func:`make_topology`, ...) rather than directly. Instances compare (and
    hash) by identity.

    Attributes:
      name: Name of the topology, e.g. ``"ring"``.
      num_clients: Number of clients ``N``.
      stochastic: What every ``W_t`` satisfies: ``"doubly"``, ``"row"`` or
        ``"column"`` stochastic.
      time_varying: Whether ``W_t`` depends on the round ``t``.
      period: For a time-varying topology whose sequence repeats, the number of rounds
        ``P`` with ``W_{t+P} = W_t``; None otherwise (static, or random every round).
      directed: Whether the edge pattern of ``W_t`` (``W_t[i, j] > 0``, ``i != j``) can be
        asymmetric, i.e. client ``i`` may listen to ``j`` while ``j`` does not listen to
        ``i``. Builders of random topologies set it (True unless every round is the complete
        graph); when left None it is computed: from ``W`` for a static topology, from every
        round of one period for a periodic one, and True for one random every round.
    """

    name: str
    num_clients: int
    stochastic: str
    time_varying: bool
    _matrix_fn: Callable[[int], np.ndarray] = dataclasses.field(repr=False)
    period: int | None = None
    directed: bool | None = None

    def __post_init__(self):
        if self.directed is None:
            if not self.time_varying:
                directed = _asymmetric(self._matrix_fn(0))
            elif self.period is not None:
                directed = any(_asymmetric(self._matrix_fn(t)) for t in range(self.period))
            else:
                directed = True  # a fresh random graph every round: assume it can be
            object.__setattr__(self, "directed", bool(directed))

    def matrix(self, round: int = 0) -> np.ndarray:  # pylint: disable=redefined-builtin
        """Returns the mixing matrix ``W_t`` of communication round ``t``.

        Args:
          round: Nonnegative round index ``t``; static topologies ignore it.

        Returns:
          A fresh float32 array of shape ``[num_clients, num_clients]``.
        """
        if isinstance(round, bool) or not isinstance(round, numbers.Integral) or round < 0:
            raise ValueError(f"round must be a nonnegative integer, got {round!r}.")
        return np.array(self._matrix_fn(int(round)), dtype=np.float32)

    def spectral_gap(self) -> float:
        """Returns the spectral gap of the topology (see :func:`spectral_gap`).

        Static: ``1 - ||W - 11^T/N||_2``. Periodic time-varying: the gap per round over one
        period, ``1 - ||W_{P-1} ... W_1 W_0 - 11^T/N||_2 ** (1/P)``. A single round of such a
        topology may be disconnected (gap 0); the product over a period says how fast the
        sequence mixes: it contracts the distance to the average by ``(1 - gap) ** P``
        every ``P`` rounds (for doubly stochastic ``W_t``).

        Only doubly stochastic topologies have this gap; for a row or column stochastic one
        use :meth:`second_eigenvalue_modulus`.

        Returns:
          The spectral gap as a Python float.

        Raises:
          ValueError: If the topology is time-varying without a period (random rounds), or
            is not doubly stochastic.
        """
        if self.time_varying and self.period is None:
            raise ValueError(
                f"{self.name!r} draws a new graph every round and has no period, so it has no "
                "single spectral gap; call spectral_gap(topology.matrix(t)) for round t."
            )
        if self.stochastic != "doubly":
            raise ValueError(
                f"{self.name!r} is {self.stochastic} stochastic, not doubly stochastic, so "
                "1 - ||W - 11^T/N||_2 does not measure how fast it mixes; use "
                "topology.second_eigenvalue_modulus() (|lambda_2|, the geometric rate of "
                "row-stochastic consensus and of push-sum) instead."
            )
        if not self.time_varying:
            return spectral_gap(self._matrix_fn(0))
        contraction = 1.0 - spectral_gap(self._period_product())
        return float(1.0 - max(contraction, 0.0) ** (1.0 / self.period))

    def second_eigenvalue_modulus(self) -> float:
        """Returns ``|lambda_2|`` of the topology (see :func:`second_eigenvalue_modulus`).

        Static: ``|lambda_2(W)|``. Periodic time-varying: the modulus per round over one
        period, ``|lambda_2(W_{P-1} ... W_1 W_0)| ** (1/P)``. Defined for every kind of
        stochasticity; smaller is faster.

        Returns:
          The modulus as a Python float in ``[0, 1]``.

        Raises:
          ValueError: If the topology is time-varying without a period (random rounds).
        """
        if not self.time_varying:
            return second_eigenvalue_modulus(self._matrix_fn(0))
        if self.period is None:
            raise ValueError(
                f"{self.name!r} draws a new graph every round and has no period, so it has no "
                "single second eigenvalue; call second_eigenvalue_modulus(topology.matrix(t)) "
                "for round t."
            )
        modulus = second_eigenvalue_modulus(self._period_product())
        return float(modulus ** (1.0 / self.period))

    def _period_product(self) -> np.ndarray:
        """``W_{P-1} ... W_1 W_0`` in float64 (periodic topologies only)."""
        product = np.eye(self.num_clients)
        for t in range(self.period):
            product = np.asarray(self._matrix_fn(t), dtype=np.float64) @ product
        return product


# --------------------------------------------------------------------------- #
# Validation and analysis.
# --------------------------------------------------------------------------- #


def _asymmetric(W) -> bool:
    """Whether the edge pattern ``W[i, j] > 0`` (``i != j``) of ``W`` is not symmetric."""
    edges = np.asarray(W) > 0
    np.fill_diagonal(edges, False)
    return not np.array_equal(edges, edges.T)


def _reachable(adjacency: np.ndarray, start: int) -> np.ndarray:
    """Boolean mask of the nodes reachable from ``start`` along ``adjacency[u, v]`` edges u->v."""
    visited = np.zeros(adjacency.shape[0], dtype=bool)
    visited[start] = True
    frontier = np.array([start])
    while frontier.size:
        new = adjacency[frontier].any(axis=0) & ~visited
        visited |= new
        frontier = np.flatnonzero(new)
    return visited


def _connectivity_problem(W: np.ndarray) -> str | None:
    """Describes why the support of ``W`` is not strongly connected, or returns None."""
    # Information flows j -> i when W[i, j] > 0, i.e. along the edges of W^T.
    flows = W.T > 0
    from_0 = _reachable(flows, 0)
    if not from_0.all():
        missed = np.flatnonzero(~from_0)
        return (
            f"information from client 0 never reaches {missed.size} of {W.shape[0]} clients "
            f"(e.g. client {missed[0]})"
        )
    to_0 = _reachable(flows.T, 0)
    if not to_0.all():
        missed = np.flatnonzero(~to_0)
        return (
            f"information from {missed.size} of {W.shape[0]} clients never reaches client 0 "
            f"(e.g. from client {missed[0]})"
        )
    return None


def is_connected(W) -> bool:
    """Whether the graph of ``W`` (edge ``j -> i`` iff ``W[i, j] > 0``) is strongly connected.

    Args:
      W: Square matrix of shape ``[N, N]``.

    Returns:
      True iff every client's information reaches every other client.
    """
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise ValueError(f"W must be a non-empty square 2-D array, got shape {W.shape}.")
    return _connectivity_problem(W) is None


def validate_mixing_matrix(
    W, *, stochastic: str = "doubly", require_connected: bool = True, atol: float = 1e-5
) -> np.ndarray:
    """Checks that ``W`` is a valid mixing matrix and returns it as float64.

    Args:
      W: Candidate mixing matrix of shape ``[N, N]`` (NumPy or JAX array, or nested lists).
      stochastic: ``"doubly"``, ``"row"`` or ``"column"``: which sums must be one.
      require_connected: Whether the graph with edge ``j -> i`` iff ``W[i, j] > 0``
        must be strongly connected (needed for gossip to reach consensus).
      atol: Absolute tolerance on the row/column sums.

    Returns:
      ``W`` as a float64 NumPy array (a copy).

    Raises:
      ValueError: If ``W`` is not a square 2-D array, has non-finite or negative
        entries, has rows/columns not summing to one as required, or (when
        ``require_connected``) is not strongly connected.
    """
    if stochastic not in _STOCHASTIC_KINDS:
        raise ValueError(f"stochastic must be one of {_STOCHASTIC_KINDS}, got {stochastic!r}.")
    W = np.array(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise ValueError(
            f"A mixing matrix must be a non-empty square 2-D array [N, N], got shape {W.shape}."
        )
    if not np.isfinite(W).all():
        i, j = np.argwhere(~np.isfinite(W))[0]
        raise ValueError(f"Mixing matrix has non-finite entries, e.g. W[{i}, {j}] = {W[i, j]}.")
    if (W < 0).any():
        i, j = np.argwhere(W < 0)[0]
        raise ValueError(f"Mixing matrix must be nonnegative, got W[{i}, {j}] = {W[i, j]:.6g}.")
    sums_to_one = {
        label: np.abs(W.sum(axis=axis) - 1.0) <= atol for axis, label in ((1, "row"), (0, "column"))
    }
    for axis, label in ((1, "row"), (0, "column")):
        if stochastic not in (label, "doubly"):
            continue
        sums = W.sum(axis=axis)
        worst = int(np.argmax(np.abs(sums - 1.0)))
        if abs(sums[worst] - 1.0) > atol:
            other = "column" if label == "row" else "row"
            if label == "row":
                why = (
                    "Row i holds the weights client i gives to what it receives: plain gossip "
                    "needs them to sum to one so that every client takes a convex combination."
                )
            else:
                why = (
                    "Column j holds the weights of what client j sends: push-sum needs them to "
                    "sum to one so that no mass is lost or created."
                )
            if sums_to_one[other].all():
                suits = "push-sum" if other == "column" else "plain gossip"
                why += f" This matrix is {other} stochastic, which suits {suits} instead."
            raise ValueError(
                f"A {stochastic} stochastic mixing matrix needs every {label} to sum to one "
                f"(atol={atol}); {label} {worst} sums to {sums[worst]:.8g}. {why}"
            )
    if require_connected:
        problem = _connectivity_problem(W)
        if problem is not None:
            raise ValueError(
                f"Mixing matrix graph (edge j -> i where W[i, j] > 0) is not strongly "
                f"connected: {problem}."
            )
    return W


def spectral_gap(W) -> float:
    """Spectral gap ``1 - lambda`` with ``lambda = ||W - 11^T/N||_2`` (largest singular value).

    For a doubly stochastic ``W`` one gossip step contracts the distance to the
    average by at least ``lambda``, so a larger gap means faster mixing
    (``1`` for the complete graph, ``0`` for a disconnected one). For matrices
    that are not doubly stochastic the formula is evaluated as is and has no
    such interpretation.

    Args:
      W: Square matrix of shape ``[N, N]``.

    Returns:
      The spectral gap as a Python float.
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise ValueError(f"W must be a non-empty square 2-D array, got shape {W.shape}.")
    return float(1.0 - np.linalg.norm(W - 1.0 / W.shape[0], ord=2))


def second_eigenvalue_modulus(W) -> float:
    """Second-largest eigenvalue modulus ``|lambda_2|`` of ``W`` (moduli sorted decreasingly).

    A row or column stochastic ``W`` has ``lambda_1 = 1``. If its graph is strongly
    connected with self-loops (``W`` primitive) every other eigenvalue has modulus below
    one, and ``W^t`` converges to its rank-one limit (``1 pi^T`` for row stochastic ``W``,
    ``v 1^T`` for column stochastic ``W``) geometrically at rate ``|lambda_2|^t`` up to a
    factor polynomial in ``t``. This rate governs row-stochastic consensus and push-sum,
    for which :func:`spectral_gap` has no meaning. It is asymptotic, not a one-step bound
    (``W`` need not be normal). A disconnected stochastic ``W`` has ``|lambda_2| = 1``.

    For a doubly stochastic ``W``, ``|lambda_2| <= ||W - 11^T/N||_2 = 1 - spectral_gap(W)``
    with equality when ``W`` is normal (symmetric or circulant).

    Args:
      W: Square matrix of shape ``[N, N]``.

    Returns:
      ``|lambda_2|`` as a Python float (0 for ``N = 1``).
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise ValueError(f"W must be a non-empty square 2-D array, got shape {W.shape}.")
    if W.shape[0] == 1:
        return 0.0
    moduli = np.sort(np.abs(np.linalg.eigvals(W)))
    return float(moduli[-2])


def _check_kind(argument: str, kind) -> str:
    if kind not in _STOCHASTIC_KINDS:
        raise ValueError(f"{argument} must be one of {_STOCHASTIC_KINDS}, got {kind!r}.")
    return kind


def satisfies(kind: str, needed: str) -> bool:
    """Whether a ``kind`` stochastic matrix is ``needed`` stochastic.

    Doubly stochastic matrices are both row and column stochastic; row and column
    stochastic ones are only themselves.

    Args:
      kind: ``"doubly"``, ``"row"`` or ``"column"``: what the matrix is.
      needed: ``"doubly"``, ``"row"`` or ``"column"``: what is required.

    Returns:
      True iff ``kind == needed`` or ``kind == "doubly"``.
    """
    _check_kind("kind", kind)
    _check_kind("needed", needed)
    return kind == needed or kind == "doubly"


_NEEDS = {
    "row": (
        "mixes with plain gossip (x_i <- sum_j W_ij x_j) and needs a row stochastic (or "
        "doubly stochastic) mixing matrix, so that every client takes a convex combination"
    ),
    "column": (
        "mixes with push-sum, which needs column stochastic (or doubly stochastic) weights "
        "(the mass each client sends sums to one)"
    ),
    "doubly": (
        "needs a doubly stochastic mixing matrix (rows and columns summing to one, so that "
        "gossip preserves the average of the clients)"
    ),
}

_FIXES = {
    ("row", "column"): (
        "use push-sum (e.g. dfedpgp) on it, or a row-stochastic topology such as "
        "random_in_neighbours"
    ),
    ("column", "row"): (
        "use plain gossip (e.g. dfedavg) on it, or a column-stochastic topology such as "
        "random_out_neighbours"
    ),
    ("doubly", "row"): (
        "use a doubly stochastic topology such as ring, exponential or one_peer_exponential"
    ),
    ("doubly", "column"): (
        "use push-sum (e.g. dfedpgp) on it, or a doubly stochastic topology such as ring, "
        "exponential or one_peer_exponential"
    ),
}


def check_stochastic(topology: Topology, needed: str, who: str) -> None:
    """Checks that ``topology`` is stochastic the way an algorithm needs.

    ``needed`` is ``"row"`` for plain gossip ``x_i <- sum_j W_ij x_j`` (every client takes
    a convex combination), ``"column"`` for push-sum (``1^T W = 1^T``: the mass is
    preserved) or ``"doubly"``; a doubly stochastic topology satisfies all three (see
    :func:`satisfies`).

    Args:
      topology: The :class:`Topology`.
      needed: ``"doubly"``, ``"row"`` or ``"column"``.
      who: Who needs it, e.g. an algorithm name; used in the error message.

    Raises:
      TypeError: If ``topology`` is not a :class:`Topology`.
      ValueError: If ``needed`` is not a kind, or ``topology`` does not satisfy it; the
        message names the topology, its kind, what ``who`` needs and a fix.
    """
    if not isinstance(topology, Topology):
        raise TypeError(
            f"check_stochastic needs a fedjax_lab.topology.Topology, got "
            f"{type(topology).__name__}; wrap a matrix with topology.from_matrix(W, stochastic)."
        )
    _check_kind("needed", needed)
    if satisfies(topology.stochastic, needed):
        return
    raise ValueError(
        f"{who} {_NEEDS[needed]}; topology {topology.name!r} is {topology.stochastic} "
        f"stochastic: {_FIXES[needed, topology.stochastic]}."
    )


# --------------------------------------------------------------------------- #
# Argument checks.
# --------------------------------------------------------------------------- #


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_num_clients(name: str, n, minimum: int) -> int:
    if not _is_int(n) or n < minimum:
        raise ValueError(f"{name} needs num_clients >= {minimum}, got {n!r}.")
    return int(n)


def _check_seed(name: str, seed) -> int:
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"{name} needs a nonnegative integer seed, got {seed!r}.")
    return int(seed)


def _circulant(n: int, offsets) -> np.ndarray:
    """Matrix with ``W[i, (i + o) % n] = 1 / len(offsets)`` for each (distinct) offset ``o``."""
    W = np.zeros((n, n))
    rows = np.arange(n)
    for offset in offsets:
        W[rows, (rows + offset) % n] += 1.0 / len(offsets)
    return W


def _log2_ceil(n: int) -> int:
    """``ceil(log2 n)`` computed exactly on integers."""
    return (n - 1).bit_length()


# --------------------------------------------------------------------------- #
# Builders.
# --------------------------------------------------------------------------- #


def ring(n: int) -> Topology:
    """Ring: every client averages itself and its two neighbours with weight 1/3.

    ``lambda = (1 + 2 cos(2 pi / N)) / 3``.

    Args:
      n: Number of clients, at least 3.

    Returns:
      A static, symmetric, doubly stochastic :class:`Topology`.
    """
    n = _check_num_clients("ring", n, 3)
    return from_matrix(_circulant(n, (0, 1, -1)), "doubly", "ring")


def directed_ring(n: int) -> Topology:
    """Directed ring: client ``i`` keeps 1/2 and sends 1/2 to client ``(i + 1) mod N``.

    ``W[i, i] = 1/2`` and ``W[(i + 1) mod N, i] = 1/2``, i.e. ``W = (I + S) / 2`` with
    ``(S x)_i = x_{(i-1) mod N}``: every client averages itself and its predecessor. ``W``
    is circulant, hence doubly stochastic and normal, with eigenvalues
    ``(1 + e^{2 pi i k / N}) / 2``, ``k = 0, ..., N - 1``, of modulus ``|cos(pi k / N)|``.
    So ``lambda = ||W - 11^T/N||_2 = max_{k != 0} |cos(pi k / N)| = cos(pi / N)`` and the
    spectral gap is ``1 - cos(pi / N)``: about ``pi^2 / (2 N^2)`` for large ``N``, 3/8 of
    the undirected ring's ``4 pi^2 / (3 N^2)``.

    Args:
      n: Number of clients, at least 3.

    Returns:
      A static, directed, doubly stochastic :class:`Topology`.
    """
    n = _check_num_clients("directed_ring", n, 3)
    return from_matrix(_circulant(n, (0, -1)), "doubly", "directed_ring")


def torus(n: int) -> Topology:
    """2-D torus grid: self and the 4 grid neighbours (with wrap-around), 1/5 each.

    Client ``r * side + c`` sits at row ``r``, column ``c`` of a ``side x side``
    grid. ``lambda = (3 + 2 cos(2 pi / side)) / 5``.

    Args:
      n: Number of clients; must be ``side * side`` with ``side >= 3``.

    Returns:
      A static, symmetric, doubly stochastic :class:`Topology`.
    """
    if not _is_int(n) or n < 9 or math.isqrt(n) ** 2 != n:
        raise ValueError(
            f"torus needs num_clients to be a perfect square side*side with side >= 3 "
            f"(9, 16, 25, ...), got {n!r}."
        )
    n = int(n)
    side = math.isqrt(n)
    r, c = np.divmod(np.arange(n), side)
    W = np.zeros((n, n))
    for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        W[np.arange(n), ((r + dr) % side) * side + (c + dc) % side] = 1.0 / 5.0
    return from_matrix(W, "doubly", "torus")


def exponential(n: int) -> Topology:
    """Static directed exponential graph: client ``i`` sends to ``(i + 2^k) mod N``, ``k < tau``.

    With ``tau = ceil(log2 N)`` every client averages itself and the
    ``tau`` clients ``i - 2^k`` it receives from with uniform weight
    ``1 / (tau + 1)``: ``W[i, (i - 2^k) mod N] = 1 / (tau + 1)``. The matrix is
    circulant and doubly stochastic but not symmetric in general: the graph is
    directed (``i`` sends to ``i + 2^k`` without receiving from it) for every
    ``N >= 4``; for ``N <= 3`` its edge pattern happens to be symmetric.

    For any ``N`` (power of two or not) the offsets ``2^k, k < tau`` satisfy
    ``1 <= 2^k <= 2^(tau-1) < N``, so they are distinct and nonzero mod ``N``:
    every row has exactly ``tau + 1`` nonzeros. ``lambda = 1 - 2/(1 + tau)``
    holds exactly for every even ``N`` (eigenvalue at frequency ``N/2``); for
    odd ``N`` the mixing is at least as fast (``lambda <= 1 - 2/(1 + tau)``).

    Args:
      n: Number of clients, at least 2.

    Returns:
      A static, directed, doubly stochastic :class:`Topology`.
    """
    n = _check_num_clients("exponential", n, 2)
    tau = _log2_ceil(n)
    offsets = [0] + [-(2**k) for k in range(tau)]  # W[i, i - 2^k]: i - 2^k sends to i
    return from_matrix(_circulant(n, offsets), "doubly", "exponential")


def one_peer_exponential(n: int) -> Topology:
    """Time-varying one-peer exponential graph ``W_t = (I + P^(2^(t mod tau))) / 2``.

    ``P`` is the cyclic shift (``(P x)_i = x_{(i+1) mod N}``) and
    ``tau = ceil(log2 N)``: at round ``t`` client ``i`` averages itself and
    client ``(i + 2^(t mod tau)) mod N``. For ``N`` a power of two, ``tau``
    consecutive rounds reach exact consensus:
    ``W_{tau-1} ... W_1 W_0 = 11^T / N``.

    Args:
      n: Number of clients, at least 2.

    Returns:
      A time-varying, doubly stochastic :class:`Topology`.
    """
    n = _check_num_clients("one_peer_exponential", n, 2)
    tau = _log2_ceil(n)

    def matrix_fn(t: int) -> np.ndarray:
        W = _circulant(n, (0, 2 ** (t % tau)))
        return validate_mixing_matrix(W, stochastic="doubly", require_connected=False)

    return Topology("one_peer_exponential", n, "doubly", True, matrix_fn, period=tau)


def fully_connected(n: int) -> Topology:
    """Complete graph: ``W = 11^T / N`` (one step reaches consensus; spectral gap 1).

    Args:
      n: Number of clients, at least 1.

    Returns:
      A static, symmetric, doubly stochastic :class:`Topology`.
    """
    n = _check_num_clients("fully_connected", n, 1)
    return from_matrix(np.full((n, n), 1.0 / n), "doubly", "fully_connected")


def default_erdos_renyi_p(n: int) -> float:
    """Default edge probability ``min(1, 3 ln(N) / N)`` of :func:`make_topology`.

    ``G(N, p)`` is connected with high probability once ``p`` exceeds the
    threshold ``ln(N) / N``; with three times the threshold the expected number
    of isolated nodes is about ``N^-2`` (``p ~ 0.14`` for ``N = 100``).

    Args:
      n: Number of clients, at least 2.

    Returns:
      The edge probability.
    """
    n = _check_num_clients("erdos_renyi", n, 2)
    return min(1.0, 3.0 * math.log(n) / n)


def erdos_renyi(n: int, p: float, seed: int) -> Topology:
    """Random undirected graph ``G(N, p)`` with Metropolis-Hastings weights.

    Each of the ``N (N - 1) / 2`` possible edges is present independently with
    probability ``p`` (``numpy.random.default_rng(seed)``). Weights are
    ``W[i, j] = 1 / (1 + max(d_i, d_j))`` for an edge ``{i, j}`` (``d`` = degree)
    and ``W[i, i] = 1 - sum_{j != i} W[i, j] > 0``.

    Args:
      n: Number of clients, at least 2.
      p: Edge probability in ``(0, 1]``.
      seed: Nonnegative integer seed.

    Returns:
      A static, symmetric, doubly stochastic :class:`Topology`.

    Raises:
      ValueError: On invalid arguments, or if the sampled graph is disconnected.
    """
    n = _check_num_clients("erdos_renyi", n, 2)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 < p <= 1.0:
        raise ValueError(f"erdos_renyi needs an edge probability p in (0, 1], got {p!r}.")
    seed = _check_seed("erdos_renyi", seed)
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < p, k=1)
    adjacency = upper | upper.T
    if not is_connected(adjacency | np.eye(n, dtype=bool)):
        raise ValueError(
            f"erdos_renyi sampled a disconnected graph for n={n}, p={p}, seed={seed}; "
            f"use a larger p (connectivity threshold ln(n)/n = {math.log(n) / n:.3g}, "
            f"default {default_erdos_renyi_p(n):.3g}) or another seed."
        )
    degree = adjacency.sum(axis=1)
    W = np.where(adjacency, 1.0 / (1.0 + np.maximum(degree[:, None], degree[None, :])), 0.0)
    W[np.diag_indices(n)] = 1.0 - W.sum(axis=1)
    return from_matrix(W, "doubly", "erdos_renyi")


def _random_neighbours(name: str, n, k, seed, *, send: bool) -> Topology:
    """Shared builder of :func:`random_in_neighbours` and :func:`random_out_neighbours`.

    Round ``t`` draws, for every client ``i``, ``k`` distinct clients ``j != i`` from
    ``numpy.random.default_rng([seed, t])`` into ``A_t[i, j] = 1 / (k + 1)``, with
    ``A_t[i, i] = 1 / (k + 1)``. Listening to them gives the row stochastic ``W_t = A_t``;
    sending to them gives the column stochastic ``W_t = A_t^T``. So for the same
    ``(n, k, seed, t)`` the two topologies' matrices are transposes of each other.
    """
    n = _check_num_clients(name, n, 2)
    if not _is_int(k) or not 1 <= k <= n - 1:
        raise ValueError(f"{name} needs 1 <= k <= num_clients - 1 = {n - 1}, got k={k!r}.")
    k = int(k)
    seed = _check_seed(name, seed)
    stochastic = "column" if send else "row"

    def matrix_fn(t: int) -> np.ndarray:
        keys = np.random.default_rng([seed, t]).random((n, n))
        keys[np.diag_indices(n)] = np.inf  # never pick oneself
        # The k smallest of n - 1 i.i.d. keys form a uniformly random k-subset.
        chosen = np.argpartition(keys, k - 1, axis=1)[:, :k]
        W = np.eye(n) / (k + 1)
        W[np.arange(n)[:, None], chosen] = 1.0 / (k + 1)
        if send:
            W = W.T.copy()
        return validate_mixing_matrix(W, stochastic=stochastic, require_connected=False)

    # With k = n - 1 every round is the complete graph, whose pattern is symmetric.
    return Topology(name, n, stochastic, True, matrix_fn, directed=k < n - 1)


def random_in_neighbours(n: int, k: int, seed: int) -> Topology:
    """Time-varying directed graph: each round every client listens to ``k`` random others.

    At round ``t`` client ``i`` draws ``k`` distinct clients ``j != i``
    uniformly at random and sets ``W_t[i, j] = W_t[i, i] = 1 / (k + 1)``. The
    draws use ``numpy.random.default_rng([seed, t])``, so ``matrix(t)`` is
    reproducible and independent of the order in which rounds are requested.
    ``W_t`` is row stochastic (not column stochastic in general): the graph of
    plain gossip. It is the transpose of :func:`random_out_neighbours`'s
    ``W_t`` for the same arguments.

    Args:
      n: Number of clients, at least 2.
      k: In-degree (excluding self), ``1 <= k <= n - 1``.
      seed: Nonnegative integer seed.

    Returns:
      A time-varying, row stochastic :class:`Topology` (directed unless ``k = n - 1``).
    """
    return _random_neighbours("random_in_neighbours", n, k, seed, send=False)


def random_out_neighbours(n: int, k: int, seed: int) -> Topology:
    """Time-varying directed graph: each round every client sends to ``k`` random others.

    At round ``t`` client ``i`` draws ``k`` distinct clients ``j != i``
    uniformly at random and sends to them: ``W_t[j, i] = W_t[i, i] = 1 / (k + 1)``
    (column ``i`` is what client ``i`` sends). The draws use
    ``numpy.random.default_rng([seed, t])``, so ``matrix(t)`` is reproducible and
    independent of the order in which rounds are requested. ``W_t`` is column
    stochastic (``1^T W_t = 1^T``; its rows do not sum to one in general): the
    graph push-sum runs on. It is the transpose of :func:`random_in_neighbours`'s
    ``W_t`` for the same arguments.

    Args:
      n: Number of clients, at least 2.
      k: Out-degree (excluding self), ``1 <= k <= n - 1``.
      seed: Nonnegative integer seed.

    Returns:
      A time-varying, column stochastic :class:`Topology` (directed unless ``k = n - 1``).
    """
    return _random_neighbours("random_out_neighbours", n, k, seed, send=True)


def from_matrix(
    W, stochastic: str = "doubly", name: str = "custom", *, require_connected: bool = True
) -> Topology:
    """Static topology from a user-given mixing matrix (validated).

    Args:
      W: Mixing matrix of shape ``[N, N]``.
      stochastic: ``"doubly"``, ``"row"`` or ``"column"``.
      name: Name of the topology.
      require_connected: Whether to require a strongly connected graph; pass
        False e.g. for ``W = I`` (no communication).

    Returns:
      A static :class:`Topology` with matrix ``W``.
    """
    W = validate_mixing_matrix(W, stochastic=stochastic, require_connected=require_connected)
    return Topology(name, W.shape[0], stochastic, False, lambda _: W, directed=_asymmetric(W))


# --------------------------------------------------------------------------- #
# Registry.
# --------------------------------------------------------------------------- #

_TOPOLOGIES = (
    "ring",
    "directed_ring",
    "torus",
    "exponential",
    "one_peer_exponential",
    "fully_connected",
    "erdos_renyi",
    "random_in_neighbours",
    "random_out_neighbours",
)
_K_TOPOLOGIES = ("random_in_neighbours", "random_out_neighbours")


def available_topologies() -> tuple[str, ...]:
    """Names accepted by :func:`make_topology`.

    Returns:
      A tuple of topology names.
    """
    return _TOPOLOGIES


def make_topology(
    name: str, num_clients: int, *, seed: int = 0, p: float | None = None, k: int | None = None
) -> Topology:
    """Builds a topology by name.

    Args:
      name: One of :func:`available_topologies`.
      num_clients: Number of clients ``N``.
      seed: Seed of the random topologies (ignored by the deterministic ones).
      p: Edge probability of ``"erdos_renyi"``; defaults to
        :func:`default_erdos_renyi_p` ``= min(1, 3 ln(N) / N)``. Must be None
        for other topologies.
      k: In-degree of ``"random_in_neighbours"``, out-degree of
        ``"random_out_neighbours"``; defaults to ``min(10, N - 1)``. An explicit
        ``k > N - 1`` is an error. Must be None for other topologies.

    Returns:
      The :class:`Topology`.

    Raises:
      ValueError: For an unknown name (the closest match is suggested) or
        invalid arguments.
    """
    validation.check_name("topology", name, _TOPOLOGIES)
    if p is not None and name != "erdos_renyi":
        raise ValueError(f"p only applies to 'erdos_renyi', got p={p!r} for {name!r}.")
    if k is not None and name not in _K_TOPOLOGIES:
        raise ValueError(
            f"k only applies to 'random_in_neighbours' and 'random_out_neighbours', "
            f"got k={k!r} for {name!r}."
        )
    if name == "erdos_renyi":
        return erdos_renyi(
            num_clients, default_erdos_renyi_p(num_clients) if p is None else p, seed
        )
    if name in _K_TOPOLOGIES:
        if k is None:
            k = min(10, _check_num_clients(name, num_clients, 2) - 1)
        builder = random_in_neighbours if name == "random_in_neighbours" else random_out_neighbours
        return builder(num_clients, k, seed)
    builders = {
        "ring": ring,
        "directed_ring": directed_ring,
        "torus": torus,
        "exponential": exponential,
        "one_peer_exponential": one_peer_exponential,
        "fully_connected": fully_connected,
    }
    return builders[name](num_clients)
