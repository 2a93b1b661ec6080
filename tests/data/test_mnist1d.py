"""MNIST-1D: generated deterministically from (size, seed), cached with a fingerprint that
every read checks, and partitioned like any centralised source."""

import json

import numpy as np
import pytest

from fedjax_lab import data
from fedjax_lab.data import mnist1d
from fedjax_lab.specs import config as config_lib


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDJAX_LAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_same_size_and_seed_give_the_same_signals_and_another_seed_others():
    x, y, x_test, y_test = mnist1d.load(200, 3)
    assert x.shape == (160, 40) and x_test.shape == (40, 40)
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert set(np.unique(np.concatenate([y, y_test]))) == set(range(10))
    again = mnist1d._generate(mnist1d.generation_args(200, 3))  # not from the cache
    for a, b in zip((x, y, x_test, y_test), again):
        np.testing.assert_array_equal(a, b)
    other = mnist1d.load(200, 4)[0]
    assert not np.array_equal(x, other)


def test_generation_leaves_numpys_global_generator_alone():
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    mnist1d.load(100, 0)
    assert np.random.rand() == expected


def test_a_second_load_reads_the_cache_and_does_not_generate(monkeypatch):
    first = mnist1d.load(100, 0)

    def refuse(args):
        raise AssertionError("generated again although the cache holds the set")

    monkeypatch.setattr(mnist1d, "_generate", refuse)
    for a, b in zip(first, mnist1d.load(100, 0)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage", ["truncated", "changed"])
def test_a_damaged_cache_file_is_generated_again(damage):
    first = mnist1d.load(100, 0)
    path = mnist1d.cache_path(mnist1d.generation_args(100, 0))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    else:  # the arrays changed under the recorded fingerprint
        with np.load(path) as stored:
            kept = {k: stored[k] for k in stored.files}
        kept["x_train"] = kept["x_train"] + 1.0
        with open(path, "wb") as f:
            np.savez(f, **kept)
    with pytest.warns(UserWarning, match="Generating MNIST-1D again"):
        second = mnist1d.load(100, 0)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    with np.load(path) as stored:  # and the cache holds the good set again
        np.testing.assert_array_equal(stored["x_train"], first[0])


def test_bad_sizes_are_clear_errors():
    for bad in (5, 0, 2.5, True):
        with pytest.raises(ValueError, match="mnist1d num_samples to be an integer >= 10"):
            mnist1d.load(bad, 0)


def test_mnist1d_is_a_federated_dataset_with_the_usual_partitions():
    for partition in ("iid", "dirichlet", "pathological"):
        d = data.make_federated_dataset(
            "mnist1d", 4, seed=0, partition=partition, mnist1d_samples=400,
            test_examples_per_client=10,
        )
        assert d.input_shape == (40,) and d.num_classes == 10
        assert d.train.x.shape[0] == 4 and d.train.x.shape[2:] == (40,)
        assert int(np.sum(d.train.num_examples)) == 320


def test_the_resolved_config_records_the_generation_and_refuses_another():
    c = config_lib.update(config_lib.get_config("fedavg"), dataset="mnist1d")
    resolved = config_lib.resolve(c)
    recorded = json.loads(resolved.data.mnist1d_generation)
    assert recorded == mnist1d.generation_args(20_000, 0)
    assert recorded["train_split"] == 0.8 and recorded["padding"] == [36, 60]
    assert config_lib.resolve(resolved).data.mnist1d_generation == resolved.data.mnist1d_generation
    wrong = config_lib.update(resolved, {"data.mnist1d_samples": 30_000})
    with pytest.raises(ValueError, match="data.mnist1d_generation is recorded, not set"):
        config_lib.resolve(wrong)
    digits = config_lib.resolve(config_lib.get_config("fedavg"))
    assert digits.data.mnist1d_generation is None
