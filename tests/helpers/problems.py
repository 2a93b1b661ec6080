"""The small problem the algorithm tests share: multinomial logistic regression on random
data (the model of ``numpy_reference``), with tolerances for comparing against it.

``problem()`` gives parameters and ``num_batches`` x K local steps of B examples of D
features and C classes; ``LOSS`` is its JAX loss, ``LR`` the tests' learning rate and N
their number of clients.
"""

import numpy as np

from fedjax_lab import objectives

N, K, B, D, C = 5, 3, 4, 6, 3
LR = 0.3


def apply_fn(params, x):
    return x @ params["w"] + params["b"]


LOSS = objectives.cross_entropy_loss(apply_fn)


def problem(num_batches=N, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "w": rng.normal(size=(D, C)).astype(np.float32) * 0.5,
        "b": rng.normal(size=(C,)).astype(np.float32) * 0.1,
    }
    batches = {
        "x": rng.normal(size=(num_batches, K, B, D)).astype(np.float32),
        "y": rng.integers(0, C, size=(num_batches, K, B)).astype(np.int32),
    }
    return params, batches


def as64(tree):
    return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def assert_close(actual, expected, atol=2e-5):
    for k in expected:
        np.testing.assert_allclose(np.asarray(actual[k]), expected[k], atol=atol, rtol=1e-4)
