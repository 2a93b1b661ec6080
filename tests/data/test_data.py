"""Tests for fedjax_lab.data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import data


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(seed=0)


@pytest.fixture(scope="module")
def train_labels(digits):
    return np.asarray(digits[1])


def _check_partition(parts, n_total, num_clients):
    assert len(parts) == num_clients
    flat = np.concatenate(parts)
    assert len(np.unique(flat)) == len(flat), "indices must be disjoint"
    assert flat.min() >= 0 and flat.max() < n_total
    assert all(len(p) > 0 for p in parts)


def _mean_max_share(labels, parts):
    return data.label_proportions(labels, parts, 10).max(axis=1).mean()


# ----------------------------------------------------------------- sources


def test_load_digits(digits):
    x_tr, y_tr, x_te, y_te = digits
    assert x_tr.shape[1:] == (8, 8, 1) and x_tr.dtype == np.float32
    assert y_tr.dtype == np.int32 and len(x_tr) + len(x_te) == 1797
    assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    assert set(np.unique(y_te)) == set(range(10))  # stratified


def test_synthetic_shapes_and_reproducibility():
    a = data.synthetic_federated(8, 1.0, 1.0, seed=3)
    b = data.synthetic_federated(8, 1.0, 1.0, seed=3)
    c = data.synthetic_federated(8, 1.0, 1.0, seed=4)
    x_tr, y_tr, x_te, y_te = a
    for xs, ys in ((x_tr, y_tr), (x_te, y_te)):
        assert len(xs) == len(ys) == 8
        for x, y in zip(xs, ys):
            assert x.shape == (len(y), 60) and x.dtype == np.float32
            assert y.dtype == np.int32 and y.min() >= 0 and y.max() < 10
    for k in range(8):
        n = len(y_tr[k]) + len(y_te[k])
        assert 50 <= n <= 1000
        assert len(y_te[k]) == round(0.2 * n)
    for u, v in zip(a, b):
        for p, q in zip(u, v):
            np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a[0][0][:10], c[0][0][:10])


def _label_spread(ys):
    props = np.stack([np.bincount(y, minlength=10) / len(y) for y in ys])
    return np.abs(props - props.mean(axis=0)).sum(axis=1).mean()


def test_synthetic_heterogeneity():
    _, ys_iid, _, _ = data.synthetic_federated(30, 0.0, 0.0, seed=0, iid=True)
    _, ys_het, _, _ = data.synthetic_federated(30, 1.0, 1.0, seed=0)
    assert _label_spread(ys_het) > 3 * _label_spread(ys_iid)
    # beta spreads the clients' input means.
    spread = []
    for beta in (0.0, 4.0):
        xs, _, _, _ = data.synthetic_federated(30, 1.0, beta, seed=0)
        spread.append(np.std([x.mean() for x in xs]))
    assert spread[1] > 3 * spread[0]


# ------------------------------------------------------------- partitions


def test_iid(train_labels):
    parts = data.iid(train_labels, 10, seed=0)
    _check_partition(parts, len(train_labels), 10)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(train_labels)


def test_dirichlet_equal_sizes_and_skew(train_labels):
    parts = data.dirichlet(train_labels, 20, alpha=0.1, seed=0)
    _check_partition(parts, len(train_labels), 20)
    assert {len(p) for p in parts} == {len(train_labels) // 20}
    iid_share = _mean_max_share(train_labels, data.iid(train_labels, 20, seed=0))
    assert _mean_max_share(train_labels, parts) > 2.5 * iid_share
    # Large alpha is close to IID.
    near_iid = data.dirichlet(train_labels, 20, alpha=1000.0, seed=0)
    assert _mean_max_share(train_labels, near_iid) < 1.5 * iid_share


def test_dirichlet_exhausts_classes():
    # Few examples per class: later clients must renormalise over the rest.
    labels = np.repeat(np.arange(5), 4)
    parts = data.dirichlet(labels, 5, alpha=0.05, seed=1)
    _check_partition(parts, 20, 5)
    assert sorted(np.concatenate(parts)) == list(range(20))


def test_dirichlet_per_class(train_labels):
    parts = data.dirichlet_per_class(train_labels, 10, alpha=0.5, seed=0)
    _check_partition(parts, len(train_labels), 10)
    assert sum(len(p) for p in parts) == len(train_labels)


def test_pathological(train_labels):
    k = 2
    parts = data.pathological(train_labels, 10, classes_per_client=k, seed=0)
    _check_partition(parts, len(train_labels), 10)
    shard = len(train_labels) // (10 * k)
    assert {len(p) for p in parts} == {k * shard}
    # Shards may straddle a class boundary, so allow one extra label per shard.
    distinct = [len(np.unique(train_labels[p])) for p in parts]
    assert max(distinct) <= 2 * k
    assert np.mean(distinct) <= k + 1


def test_pathological_at_most_k_labels_when_shards_align():
    labels = np.repeat(np.arange(10), 30)
    parts = data.pathological(labels, 5, classes_per_client=2, seed=0)
    _check_partition(parts, 300, 5)
    assert all(len(np.unique(labels[p])) <= 2 for p in parts)


def test_empty_client_errors(train_labels):
    with pytest.raises(ValueError, match=r"Client \d+ received no examples.*alpha=0.001"):
        data.dirichlet_per_class(train_labels, 100, alpha=0.001, seed=0)
    with pytest.raises(ValueError, match=r"num_clients=5 > 3 training examples"):
        data.iid(np.array([0, 1, 2]), 5, seed=0)
    with pytest.raises(ValueError, match=r"no examples.*reduce num_clients"):
        data.pathological(np.arange(10), 6, classes_per_client=2, seed=0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        data.dirichlet(train_labels, 5, alpha=0.0, seed=0)


def test_label_proportions():
    labels = np.array([0, 0, 1, 2])
    props = data.label_proportions(labels, [np.array([0, 1, 2]), np.array([3])], 3)
    np.testing.assert_allclose(props, [[2 / 3, 1 / 3, 0], [0, 0, 1]])


def test_per_client_test_sets_follow_proportions(digits):
    y_test = np.asarray(digits[3])
    props = np.array(
        [[0.5, 0.25, 0.25] + [0.0] * 7, [0.0] * 9 + [1.0], [1 / 3, 1 / 3, 1 / 3] + [0.0] * 7]
    )
    sets = data.per_client_test_sets(y_test, props, 100, seed=0)
    counts = np.stack([np.bincount(y_test[s], minlength=10) for s in sets])
    np.testing.assert_array_equal(counts.sum(axis=1), 100)
    np.testing.assert_array_equal(counts[0, :3], [50, 25, 25])
    assert counts[1, 9] == 100  # more than available: with replacement
    assert sorted(counts[2, :3]) == [33, 33, 34]
    # Without replacement when the class has enough examples (about 36 per class).
    assert len(np.unique(sets[0][y_test[sets[0]] == 1])) == 25


# ------------------------------------------------------------ client data


_sample = jax.jit(data.sample_batches, static_argnames=("num_steps", "batch_size"))


def _toy_clients():
    rng = np.random.default_rng(0)
    sizes = [3, 12, 7, 20]
    # Each example's x encodes (client, example index) so samples can be traced.
    xs = [
        np.stack([np.full((2,), 100 * c + j, np.float32) for j in range(n)])
        for c, n in enumerate(sizes)
    ]
    ys = [rng.integers(0, 5, n).astype(np.int32) for n in sizes]
    return data.stack_clients(xs, ys), sizes


def test_stack_clients():
    arrays, sizes = _toy_clients()
    assert arrays.x.shape == (4, 20, 2) and arrays.x.dtype == jnp.float32
    assert arrays.y.shape == (4, 20) and arrays.y.dtype == jnp.int32
    np.testing.assert_array_equal(arrays.num_examples, sizes)
    assert float(jnp.abs(arrays.x[0, 3:]).sum()) == 0.0
    with pytest.raises(ValueError, match="Client 1 has 0 examples"):
        data.stack_clients([np.zeros((2, 3)), np.zeros((0, 3))], [np.zeros(2), np.zeros(0)])


def test_sample_batches():
    arrays, sizes = _toy_clients()
    key = jax.random.PRNGKey(0)
    ids = jnp.array([0, 1, 2, 3])
    out = _sample(arrays, ids, key, num_steps=6, batch_size=5)
    assert out["x"].shape == (4, 6, 5, 2) and out["y"].shape == (4, 6, 5)
    codes = np.asarray(out["x"][..., 0]).astype(int)
    for c, n in enumerate(sizes):
        assert np.all(codes[c] // 100 == c)
        idx = codes[c] % 100
        assert idx.min() >= 0 and idx.max() < n  # real examples only
        np.testing.assert_array_equal(out["y"][c], np.asarray(arrays.y[c])[idx])
        if n >= 5:
            assert all(len(np.unique(step)) == 5 for step in idx)
    # Deterministic; a different key changes the batches.
    again = _sample(arrays, ids, key, num_steps=6, batch_size=5)
    np.testing.assert_array_equal(out["x"], again["x"])
    other = _sample(arrays, ids, jax.random.PRNGKey(1), num_steps=6, batch_size=5)
    assert not np.array_equal(out["x"], other["x"])


def test_sample_batches_independent_of_cohort_and_jittable():
    arrays, _ = _toy_clients()
    key = jax.random.PRNGKey(7)
    alone = _sample(arrays, jnp.array([2]), key, num_steps=3, batch_size=4)
    cohort = _sample(arrays, jnp.array([3, 0, 2, 1]), key, num_steps=3, batch_size=4)
    np.testing.assert_array_equal(alone["x"][0], cohort["x"][2])
    np.testing.assert_array_equal(alone["y"][0], cohort["y"][2])
    eager = data.sample_batches(arrays, jnp.array([2]), key, num_steps=3, batch_size=4)
    np.testing.assert_array_equal(alone["x"], eager["x"])


def test_sample_batches_larger_than_any_client():
    arrays, sizes = _toy_clients()
    out = _sample(arrays, jnp.array([0, 3]), jax.random.PRNGKey(0), num_steps=2, batch_size=25)
    idx = np.asarray(out["x"][..., 0]).astype(int) % 100
    assert idx[0].max() < sizes[0] and idx[1].max() < sizes[3]


# ------------------------------------------------------- federated datasets


def test_make_digits():
    ds = data.make_federated_dataset("digits", 10, seed=0)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.input_shape == (8, 8, 1)
    assert ds.train.x.shape[0] == 10 and ds.train.x.shape[2:] == (8, 8, 1)
    assert ds.test.x.shape == (10, 100, 8, 8, 1)
    np.testing.assert_array_equal(ds.test.num_examples, 100)
    assert int(ds.train.num_examples.sum()) <= 1437
    # Test label mix follows the training mix.
    for i in range(10):
        n = int(ds.train.num_examples[i])
        train_p = np.bincount(np.asarray(ds.train.y[i, :n]), minlength=10) / n
        test_p = np.bincount(np.asarray(ds.test.y[i]), minlength=10) / 100
        assert np.abs(train_p - test_p).max() <= 0.01


def test_make_synthetic():
    ds = data.make_federated_dataset("synthetic", 5, seed=0)
    assert ds.input_shape == (60,) and ds.train.x.shape[::2] == (5, 60)
    iid_ds = data.make_federated_dataset("synthetic", 5, seed=0, partition="iid")
    assert iid_ds.train.x.shape[0] == 5
    assert {"digits", "synthetic"} <= set(data.available_datasets())
    assert "natural" in data.available_partitions()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="digitz"), r"Unknown dataset 'digitz'. Did you mean 'digits'.*synthetic"),
        (
            dict(name="digits", partition="dirichlett"),
            r"Unknown partition 'dirichlett'.*Did you mean 'dirichlet'",
        ),
        (
            dict(name="digits", partition="natural"),
            r"'natural' is not valid for dataset 'digits'.*dirichlet",
        ),
        (
            dict(name="synthetic", partition="dirichlet"),
            r"not valid for dataset 'synthetic'.*natural",
        ),
        (dict(name="digits", num_clients=0), r"num_clients must be >= 1, got 0"),
        (dict(name="digits", alpha=-1.0), r"alpha must be > 0, got -1.0"),
        (
            dict(name="digits", classes_per_client=11),
            r"classes_per_client must be in \[1, 10\].*got 11",
        ),
        (
            dict(name="digits", test_examples_per_client=0),
            r"test_examples_per_client must be >= 1, got 0",
        ),
    ],
)
def test_make_errors(kwargs, match):
    kwargs = {"num_clients": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        data.make_federated_dataset(seed=0, **kwargs)
