"""Partitioners that split a centralised training set across clients.

Each partitioner takes the training labels and returns ``num_clients`` int64
index arrays into the training set; no example is used twice. A ValueError is
raised when a client would end with no data.
"""

import numpy as np


def _check_nonempty(parts: list[np.ndarray], params: str, advice: str) -> list[np.ndarray]:
    for i, part in enumerate(parts):
        if len(part) == 0:
            raise ValueError(f"Client {i} received no examples ({params}); {advice}.")
    return parts


def _check_num_clients(labels: np.ndarray, num_clients: int) -> None:
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}.")
    if num_clients > len(labels):
        raise ValueError(
            f"Client {len(labels)} would receive no examples (num_clients={num_clients} > "
            f"{len(labels)} training examples); use at most {len(labels)} clients."
        )


def iid(labels: np.ndarray, num_clients: int, seed: int) -> list[np.ndarray]:
    """Shuffles all examples and splits them into equal shards (sizes differ by at most 1)."""
    labels = np.asarray(labels)
    _check_num_clients(labels, num_clients)
    perm = np.random.default_rng(seed).permutation(len(labels))
    return [np.sort(p) for p in np.array_split(perm, num_clients)]


def dirichlet(labels: np.ndarray, num_clients: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Equal-size label-skewed shards.

    Every client gets ``n = len(labels) // num_clients`` examples. Client i
    draws ``p_i ~ Dirichlet(alpha * 1_C)`` and fills its n slots (clients in
    order) by repeatedly drawing a class from ``p_i`` and taking a random
    unused example of that class; once a class is used up, ``p_i`` is
    renormalised over the classes still available (uniform over them if
    ``p_i`` puts no mass there). Smaller ``alpha`` means stronger label skew.
    """
    labels = np.asarray(labels)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}.")
    _check_num_clients(labels, num_clients)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    used = np.zeros(len(classes), dtype=np.int64)
    sizes = np.array([len(p) for p in pools])
    n = len(labels) // num_clients
    parts = []
    for _ in range(num_clients):
        p = rng.dirichlet(np.full(len(classes), alpha))
        taken = np.zeros(len(classes), dtype=np.int64)
        # Drawing `need` classes at once and keeping at most what is left of each
        # class is the same as drawing one at a time and redrawing from the
        # renormalised p after a class runs out.
        while (need := n - taken.sum()) > 0:
            avail = sizes - used - taken
            q = np.where(avail > 0, p, 0.0)
            q = q / q.sum() if q.sum() > 0 else (avail > 0) / np.count_nonzero(avail)
            taken += np.minimum(rng.multinomial(need, q), avail)
        parts.append(
            np.sort(np.concatenate([pool[u : u + t] for pool, u, t in zip(pools, used, taken)]))
        )
        used += taken
    return parts


def dirichlet_per_class(
    labels: np.ndarray, num_clients: int, alpha: float, seed: int
) -> list[np.ndarray]:
    """Per-class Dirichlet split (unequal client sizes).

    For each class c, ``q_c ~ Dirichlet(alpha * 1_N)`` and the shuffled examples
    of class c are cut into N consecutive pieces of sizes
    ``~ q_c * count(c)``; client i takes piece i. No retry: if a client ends
    with no examples a ValueError is raised.
    """
    labels = np.asarray(labels)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}.")
    _check_num_clients(labels, num_clients)
    rng = np.random.default_rng(seed)
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        q = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(q)[:-1] * len(idx)).astype(np.int64)
        for i, piece in enumerate(np.split(idx, cuts)):
            pieces[i].append(piece)
    parts = [np.sort(np.concatenate(p)) for p in pieces]
    return _check_nonempty(
        parts,
        f"dirichlet_per_class with alpha={alpha}, num_clients={num_clients}, seed={seed}",
        "increase alpha, reduce num_clients or use another seed",
    )


def pathological(
    labels: np.ndarray, num_clients: int, classes_per_client: int, seed: int
) -> list[np.ndarray]:
    """Classic FedAvg shard split.

    Examples are sorted by label (random order within a class) and cut into
    ``num_clients * classes_per_client`` equal shards (the remainder is
    dropped); each client takes ``classes_per_client`` random shards, so it
    sees at most ``classes_per_client`` labels when each class spans at least
    one full shard (a shard straddling a class boundary can add one more).
    """
    labels = np.asarray(labels)
    if classes_per_client < 1:
        raise ValueError(f"classes_per_client must be >= 1, got {classes_per_client}.")
    _check_num_clients(labels, num_clients)
    num_shards = num_clients * classes_per_client
    shard_size = len(labels) // num_shards
    if shard_size == 0:
        raise ValueError(
            f"Client 0 would receive no examples: {len(labels)} examples cannot fill "
            f"num_clients * classes_per_client = {num_shards} shards; reduce num_clients "
            "or classes_per_client."
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    order = perm[np.argsort(labels[perm], kind="stable")]
    shards = order[: num_shards * shard_size].reshape(num_shards, shard_size)
    assignment = rng.permutation(num_shards).reshape(num_clients, classes_per_client)
    return [np.sort(shards[a].ravel()) for a in assignment]


def label_proportions(
    labels: np.ndarray, index_arrays: list[np.ndarray], num_classes: int
) -> np.ndarray:
    """Returns ``[N, C]`` with row i the label distribution of client i's examples."""
    labels = np.asarray(labels)
    counts = np.stack([np.bincount(labels[idx], minlength=num_classes) for idx in index_arrays])
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def _largest_remainder(proportions: np.ndarray, total: int) -> np.ndarray:
    """Integer counts ~ ``proportions * total`` that sum exactly to ``total``."""
    exact = proportions / proportions.sum() * total
    counts = np.floor(exact).astype(np.int64)
    shortfall = total - counts.sum()
    counts[np.argsort(-(exact - counts), kind="stable")[:shortfall]] += 1
    return counts


def per_client_test_sets(
    test_labels: np.ndarray, proportions: np.ndarray, examples_per_client: int, seed: int
) -> list[np.ndarray]:
    """Per-client test sets drawn from a global test set with given label mix.

    Client i gets ``k_ic`` examples of class c, where ``k_ic`` rounds
    ``proportions[i, c] * examples_per_client`` by largest remainder so that
    ``sum_c k_ic = examples_per_client``. They are drawn from the test examples
    of class c without replacement if there are at least ``k_ic`` of them,
    with replacement otherwise. Different clients may share test examples.
    """
    test_labels = np.asarray(test_labels)
    proportions = np.asarray(proportions, dtype=np.float64)
    if examples_per_client < 1:
        raise ValueError(f"examples_per_client must be >= 1, got {examples_per_client}.")
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(test_labels == c) for c in range(proportions.shape[1])]
    result = []
    for i, p in enumerate(proportions):
        if p.sum() <= 0:
            raise ValueError(f"Client {i} has all-zero label proportions; it needs training data.")
        picks = []
        for c, k in enumerate(_largest_remainder(p, examples_per_client)):
            if k == 0:
                continue
            if len(by_class[c]) == 0:
                raise ValueError(
                    f"Client {i} needs {k} test examples of class {c}, but the test set has none."
                )
            picks.append(rng.choice(by_class[c], size=k, replace=len(by_class[c]) < k))
        result.append(np.concatenate(picks))
    return result
