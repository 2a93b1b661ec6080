"""Raw data sources as NumPy arrays (no downloads)."""

import numpy as np

# Cap on per-client sample counts for the synthetic benchmark. FedProx draws
# counts from lognormal(4, 2) + 50, whose tail reaches tens of thousands; the cap
# bounds the padded [N, M, dim] arrays.
SYNTHETIC_MAX_EXAMPLES = 1000


# Tasks derived from the digits, for tuning a model pre-trained on them (the library's
# checkpoints, :mod:`fedjax_lab.pretrained`): domain shifts keep the labels, the two halves
# of the label set give a source task and a target task with other classes.
DIGITS_VARIANTS = ("original", "inverted", "rotated", "low", "high")


def load_digits(
    seed: int, test_fraction: float = 0.2, variant: str = "original"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), or a task derived from them.

    Pixels are scaled from [0, 16] to [0, 1]. The train/test split is stratified
    by label and determined by ``seed``; the variants transform the same split:

    * ``"inverted"``: ``1 - x`` (a domain shift; same labels);
    * ``"rotated"``: every image turned 90 degrees counter-clockwise (same labels);
    * ``"low"``: the digits 0 to 4 only (5 classes);
    * ``"high"``: the digits 5 to 9 only, labelled 0 to 4 (5 classes no model of ``"low"``
      has seen).

    Returns:
      ``(x_train, y_train, x_test, y_test)`` with x float32 [n, 8, 8, 1] and
      y int32 [n].
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    if variant not in DIGITS_VARIANTS:
        raise ValueError(f"Unknown digits variant {variant!r}; expected one of {DIGITS_VARIANTS}.")
    import sklearn.datasets  # scikit-learn is imported when the digits are loaded
    from sklearn.model_selection import train_test_split

    digits = sklearn.datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return (*_digits_variant(x_train, y_train, variant), *_digits_variant(x_test, y_test, variant))


def _digits_variant(x: np.ndarray, y: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    if variant == "inverted":
        return 1.0 - x, y
    if variant == "rotated":
        return np.ascontiguousarray(np.rot90(x, k=1, axes=(1, 2))), y
    if variant == "low":
        keep = y < 5
        return x[keep], y[keep]
    if variant == "high":
        keep = y >= 5
        return x[keep], y[keep] - 5
    return x, y


def synthetic_federated(
    num_clients: int,
    alpha: float,
    beta: float,
    seed: int,
    iid: bool = False,
    dim: int = 60,
    num_classes: int = 10,
    test_fraction: float = 0.2,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """FedProx's synthetic(alpha, beta) benchmark (Li et al., 2020).

    ``N(m, s)`` below has variance ``s``. For each client k:

    * ``u_k ~ N(0, alpha)``; ``W_k[c, j] ~ N(u_k, 1)``, ``b_k[c] ~ N(u_k, 1)``;
    * ``B_k ~ N(0, beta)``; ``v_k[j] ~ N(B_k, 1)``;
    * ``x ~ N(v_k, Sigma)`` with diagonal ``Sigma_jj = j^-1.2`` (j = 1..dim);
    * ``y = argmax(softmax(W_k x + b_k)) = argmax(W_k x + b_k)``.

    Note: ``u_k`` shifts every class score by the same ``u_k (1 + sum_j x_j)``,
    so as defined by the benchmark ``alpha`` does not change the labels'
    distribution; heterogeneity comes from the per-client draws of ``W_k, b_k``
    and, through ``beta``, from the spread of the input means ``v_k``.

    With ``iid=True`` all clients share ``W, b ~ N(0, 1)`` and a mean
    ``v ~ N(0, 1)`` entrywise, so every client has the same distribution
    (``alpha``, ``beta`` unused). Client k has
    ``n_k = min(int(lognormal(4, 2)) + 50, SYNTHETIC_MAX_EXAMPLES)`` examples,
    split at random into its own train and test parts
    (``round(test_fraction * n_k)`` test examples, at least one of each).

    Returns:
      ``(x_train, y_train, x_test, y_test)``, each a list of ``num_clients``
      arrays: x float32 [n, dim], y int32 [n].
    """
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}.")
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta are variances and must be >= 0, got {alpha}, {beta}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    rng = np.random.default_rng(seed)
    counts = np.minimum(
        rng.lognormal(4, 2, num_clients).astype(np.int64) + 50, SYNTHETIC_MAX_EXAMPLES
    )
    std_x = np.arange(1, dim + 1, dtype=np.float64) ** (-1.2 / 2)
    if iid:
        w_shared = rng.normal(0.0, 1.0, (num_classes, dim))
        b_shared = rng.normal(0.0, 1.0, num_classes)
        v_shared = rng.normal(0.0, 1.0, dim)
    x_train, y_train, x_test, y_test = [], [], [], []
    for n in counts:
        if iid:
            w, b, v = w_shared, b_shared, v_shared
        else:
            u = rng.normal(0.0, np.sqrt(alpha))
            w = rng.normal(u, 1.0, (num_classes, dim))
            b = rng.normal(u, 1.0, num_classes)
            v = rng.normal(rng.normal(0.0, np.sqrt(beta)), 1.0, dim)
        x = v + std_x * rng.standard_normal((n, dim))
        y = np.argmax(x @ w.T + b, axis=1)
        n_test = min(max(1, round(test_fraction * n)), n - 1)
        perm = rng.permutation(n)
        test, train = perm[:n_test], perm[n_test:]
        x_train.append(x[train].astype(np.float32))
        y_train.append(y[train].astype(np.int32))
        x_test.append(x[test].astype(np.float32))
        y_test.append(y[test].astype(np.int32))
    return x_train, y_train, x_test, y_test
