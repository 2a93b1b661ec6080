"""Fake TFDS data for tests that never download: random images whose features (shapes,
classes) come from TFDS's own dataset code."""

import contextlib
import socket

import numpy as np

NUM_TRAIN, NUM_TEST = 300, 200  # >= 100 test examples: every class in both splits.


def refuse_network(monkeypatch):
    """Makes any attempt to open a network connection fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def fake_examples(features, num_examples, seed):
    """Random uint8 images (including 0 and 255) and labels covering all classes."""
    rng = np.random.default_rng(seed)
    num_classes = features["label"].num_classes
    images = rng.integers(0, 256, (num_examples, *features["image"].shape), dtype=np.uint8)
    images[0], images[1] = 0, 255
    labels = rng.permutation(np.arange(num_examples) % num_classes)
    return images, labels


class _FakeSource:
    """Random-access source shaped like TFDS's (``__getitems__`` batched reads)."""

    def __init__(self, features, num_examples, seed):
        self.images, self.labels = fake_examples(features, num_examples, seed)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": np.int64(self.labels[i])}

    def __getitems__(self, keys):
        return [self[i] for i in keys]


def _fake_as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
    """Replaces ``DatasetBuilder.as_data_source``; features come from TFDS's code."""
    del decoders, deserialize_method, kwargs
    sizes = {"train": (NUM_TRAIN, 0), "test": (NUM_TEST, 1)}
    return _FakeSource(builder.info.features, *sizes[split])


@contextlib.contextmanager
def mocked():
    """Every TFDS dataset reads as ``NUM_TRAIN`` and ``NUM_TEST`` fake examples.

    USE_CODE builds the DatasetInfo from the dataset's code, needing no metadata files
    (USE_FILES) or network. The default mocked data source's ``__getitems__`` is broken in
    tfds 4.9.x (its bound method misses ``self``), hence the custom ``as_data_source_fn``.
    """
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(
        policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=_fake_as_data_source
    ):
        yield
