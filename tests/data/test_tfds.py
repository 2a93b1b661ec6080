"""Tests for the TFDS sources (fedjax_lab.data.tfds_sources); never downloads."""

import io
import sys
from unittest import mock

import numpy as np
import pytest

from fedjax_lab import data
from fedjax_lab.data import tfds_sources
from tests.helpers import fake_tfds

tfds = pytest.importorskip("tensorflow_datasets")

NAMES = tuple(tfds_sources.TFDS_DATASETS)
NUM_TRAIN, NUM_TEST = fake_tfds.NUM_TRAIN, fake_tfds.NUM_TEST


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    fake_tfds.refuse_network(monkeypatch)


@pytest.fixture
def mocked_tfds():
    with fake_tfds.mocked():
        yield


def test_registry_matches_tfds_features():
    assert set(NAMES) == {"mnist", "fashion_mnist", "emnist", "cifar10", "cifar100"}
    assert set(NAMES) <= set(data.available_datasets())
    for name, spec in tfds_sources.TFDS_DATASETS.items():
        features = tfds.builder(spec.tfds_name, data_dir="/nonexistent").info.features
        assert features["label"].num_classes == spec.num_classes, name
        assert features["image"].shape == spec.input_shape, name  # EMNIST is square.
    assert tfds_sources.TFDS_DATASETS["emnist"].tfds_name == "emnist/balanced"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("partition", ["iid", "dirichlet"])
def test_make_federated_tfds(mocked_tfds, name, partition):
    spec = tfds_sources.TFDS_DATASETS[name]
    ds = data.make_federated_dataset(
        name, num_clients=4, seed=0, partition=partition, test_examples_per_client=10
    )
    assert ds.name == name
    assert ds.num_classes == spec.num_classes and ds.input_shape == spec.input_shape
    assert ds.train.x.shape[0] == 4 and ds.train.x.shape[2:] == spec.input_shape
    assert ds.test.x.shape[:2] == (4, 10) and ds.test.x.shape[2:] == spec.input_shape
    assert int(np.asarray(ds.train.num_examples).sum()) == NUM_TRAIN
    for arrays in (ds.train, ds.test):
        x, y = np.asarray(arrays.x), np.asarray(arrays.y)
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
        assert y.dtype == np.int32 and 0 <= y.min() and y.max() < spec.num_classes


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_load_tfds_scaling(mocked_tfds, name):
    spec = tfds_sources.TFDS_DATASETS[name]
    x_tr, y_tr, x_te, y_te = data.load_tfds(name)
    images, labels = fake_tfds.fake_examples(
        tfds.builder(spec.tfds_name).info.features, NUM_TRAIN, 0
    )
    assert x_tr.shape == (NUM_TRAIN, *spec.input_shape) and x_te.shape[0] == NUM_TEST
    np.testing.assert_allclose(x_tr, images / 255.0, atol=1e-7)
    np.testing.assert_array_equal(y_tr, labels)
    assert x_tr[0].max() == 0.0 and x_tr[1].min() == 1.0
    assert y_te.dtype == np.int32 and len(y_te) == NUM_TEST


def test_emnist_is_transposed_upright(mocked_tfds):
    # Both fakes draw the same 28x28x1 images; EMNIST's come back transposed.
    x_mnist = data.load_tfds("mnist")[0]
    x_emnist = data.load_tfds("emnist")[0]
    np.testing.assert_array_equal(x_emnist, np.swapaxes(x_mnist, 1, 2))
    assert not np.array_equal(x_emnist, x_mnist)


def _prepare_fake(tfds_name, data_dir, num_train, num_test):
    """Writes a real array_record TFDS dataset of random examples, offline.

    Generating runs TFDS's own writer with the download and the image encoding
    (TensorFlow's PNG encoder) replaced: PIL writes the PNGs.
    """
    import PIL.Image

    builder = tfds.builder(tfds_name, data_dir=data_dir)
    features = builder.info.features

    def split_generators(self, dl_manager):
        del self, dl_manager

        def generate(num_examples, seed):
            images, labels = fake_tfds.fake_examples(features, num_examples, seed)
            for i, (image, label) in enumerate(zip(images, labels)):
                example = {"image": image, "label": int(label)}
                if "id" in features:
                    example["id"] = f"ex_{i:05d}"
                if "coarse_label" in features:
                    example["coarse_label"] = int(label) % features["coarse_label"].num_classes
                yield i, example

        return {"train": generate(num_train, 0), "test": generate(num_test, 1)}

    def encode_png(self, image):
        buffer = io.BytesIO()
        PIL.Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
        return buffer.getvalue()

    with (
        mock.patch.object(type(builder), "_split_generators", split_generators),
        mock.patch.object(
            type(builder), "_make_download_manager", lambda *a, **k: mock.Mock(downloaded_size=0)
        ),
        mock.patch.object(tfds.features.Image, "encode_example", encode_png),
    ):
        builder.download_and_prepare(file_format="array_record")
    return features


@pytest.mark.parametrize("name", ["mnist", "cifar100"])
def test_load_prepared_array_record(tmp_path, monkeypatch, name):
    """The real, unmocked read path: array_record files, PNG decoding, data_dir."""
    spec = tfds_sources.TFDS_DATASETS[name]
    features = _prepare_fake(spec.tfds_name, str(tmp_path), 120, 100)
    x_tr, y_tr, x_te, _ = data.load_tfds(name, data_dir=str(tmp_path))
    assert x_tr.shape == (120, *spec.input_shape) and x_te.shape == (100, *spec.input_shape)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int32
    # The prepared train split is shuffled: compare as (image, label) multisets.
    images, labels = fake_tfds.fake_examples(features, 120, 0)
    np.testing.assert_allclose(x_tr * 255.0, np.rint(x_tr * 255.0), atol=1e-4)  # k / 255
    expected = sorted((int(y), x.tobytes()) for x, y in zip(images, labels))
    pixels = np.rint(x_tr * 255.0).astype(np.uint8)
    assert sorted((int(y), x.tobytes()) for x, y in zip(pixels, y_tr)) == expected
    # data_dir=None honours TFDS_DATA_DIR, read at call time.
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    ds = data.make_federated_dataset(name, 3, seed=1, partition="iid", test_examples_per_client=5)
    assert ds.input_shape == spec.input_shape and ds.num_classes == spec.num_classes
    assert int(np.asarray(ds.train.num_examples).sum()) == 120


@pytest.mark.parametrize("name", ["mnist", "emnist"])
def test_missing_dataset_message(tmp_path, name):
    tfds_name = tfds_sources.TFDS_DATASETS[name].tfds_name
    with pytest.raises(FileNotFoundError) as info:
        data.make_federated_dataset(name, 4, seed=0, data_dir=str(tmp_path))
    message = str(info.value)
    assert repr(tfds_name) in message and str(tmp_path) in message
    assert "download_and_prepare(file_format='array_record')" in message
    assert "TFDS_DATA_DIR" in message


def test_missing_dataset_default_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="'cifar10'.*empty"):
        data.load_tfds("cifar10")


def test_missing_dataset_no_data_dir(tmp_path, monkeypatch):
    # No data_dir and no TFDS_DATA_DIR: load_tfds passes data_dir=None, and
    # tfds.data_source then requests array_record itself, so a missing dataset
    # fails on its empty splits (KeyError) instead of the NotImplementedError
    # seen with a data_dir (test_missing_dataset_default_dir sets TFDS_DATA_DIR,
    # which load_tfds passes on as data_dir). TFDS reads its default data dir
    # once, at import, hence the patched constant along with HOME.
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    for load in (
        lambda: data.load_tfds("mnist"),
        lambda: data.make_federated_dataset("mnist", 10, seed=0),
    ):
        with pytest.raises(FileNotFoundError, match="'mnist' is not prepared") as info:
            load()
        assert "~/tensorflow_datasets (TFDS default)" in str(info.value)
        assert "download_and_prepare(file_format='array_record')" in str(info.value)
    assert not any(tmp_path.iterdir())  # Nothing written to the default dir.


def test_without_tensorflow_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'fedjax-lab\[tfds\]'"):
        data.make_federated_dataset("mnist", 4, seed=0)


def test_digits_ignores_data_dir(tmp_path):
    ds = data.make_federated_dataset("digits", 3, seed=0, data_dir=str(tmp_path))
    assert ds.input_shape == (8, 8, 1)


def test_unknown_tfds_name():
    with pytest.raises(ValueError, match="Unknown TFDS dataset 'svhn'"):
        data.load_tfds("svhn")


def test_an_inverted_dataset_is_one_minus_the_original(mocked_tfds):
    x, y, x_test, y_test = data.load_centralized("cifar10")
    xi, yi, xi_test, yi_test = data.load_centralized("cifar10_inverted")
    np.testing.assert_allclose(xi, 1.0 - x)
    np.testing.assert_allclose(xi_test, 1.0 - x_test)
    np.testing.assert_array_equal(yi, y)
    np.testing.assert_array_equal(yi_test, y_test)
    assert data.task_shape("cifar10_inverted") == data.task_shape("cifar10") == (10, (32, 32, 3))
    ds = data.make_federated_dataset("emnist_inverted", 3, seed=0, test_examples_per_client=5)
    assert ds.num_classes == 47 and ds.input_shape == (28, 28, 1)


def test_a_naturally_partitioned_dataset_has_no_central_form():
    with pytest.raises(ValueError, match="'synthetic' is partitioned by nature"):
        data.load_centralized("synthetic")
    with pytest.raises(ValueError, match="cifar1000"):
        data.load_centralized("cifar1000")
