"""Image classification sources from TensorFlow Datasets (optional, no downloads).

Needs the ``tfds`` extra (``pip install 'fedjax-lab[tfds]'``) but not
TensorFlow: the prepared dataset is read through ``tfds.data_source``, which
needs the ``array_record`` file format. Nothing is downloaded here; prepare a
dataset once on a machine with internet access::

    python -c "import tensorflow_datasets as tfds; \\
    tfds.builder('mnist', data_dir=DIR).download_and_prepare(file_format='array_record')"

then copy ``DIR`` and pass it as ``data_dir`` or set ``TFDS_DATA_DIR``.

Datasets (name here -> TFDS name):

* ``mnist``, ``fashion_mnist``: 28x28x1, 10 classes, 60k train / 10k test;
* ``emnist`` -> ``emnist/balanced``: 28x28x1, 47 classes (digits, upper case
  and the lower case letters that do not look like their upper case),
  112,800 train / 18,800 test. TFDS stores EMNIST images transposed (as in the
  original EMNIST files); they are transposed back to the usual upright
  orientation here;
* ``cifar10``: 32x32x3, 10 classes, 50k train / 10k test;
* ``cifar100``: 32x32x3, 100 classes (the fine ``label``), 50k train / 10k test.
"""

import os
from typing import NamedTuple

import numpy as np

# Examples decoded per batched read; bounds the memory of decoded dicts.
_READ_CHUNK = 8192

_INSTALL_HINT = "pip install 'fedjax-lab[tfds]'"


class TfdsImageSource(NamedTuple):
    """How a named image dataset is read from TFDS."""

    tfds_name: str
    num_classes: int
    input_shape: tuple[int, ...]
    transpose: bool  # swap height and width (EMNIST is stored transposed).


TFDS_DATASETS: dict[str, TfdsImageSource] = {
    "mnist": TfdsImageSource("mnist", 10, (28, 28, 1), False),
    "fashion_mnist": TfdsImageSource("fashion_mnist", 10, (28, 28, 1), False),
    "emnist": TfdsImageSource("emnist/balanced", 47, (28, 28, 1), True),
    "cifar10": TfdsImageSource("cifar10", 10, (32, 32, 3), False),
    "cifar100": TfdsImageSource("cifar100", 100, (32, 32, 3), False),
}


def _import_tfds():
    try:
        import tensorflow_datasets as tfds  # Optional dependency, imported on use.
    except ImportError as e:
        raise ImportError(
            f"TFDS datasets need the tensorflow_datasets package; install it with: {_INSTALL_HINT}"
        ) from e
    return tfds


def _not_prepared_message(tfds_name: str, data_dir: str | None) -> str:
    where = data_dir if data_dir is not None else "~/tensorflow_datasets (TFDS default)"
    prepare_dir = data_dir if data_dir is not None else "DIR"
    return (
        f"TFDS dataset {tfds_name!r} is not prepared in the array_record format in data_dir "
        f"{where!r}, and nothing is downloaded here. Prepare it once on a machine with internet "
        f'access: python -c "import tensorflow_datasets as tfds; tfds.builder({tfds_name!r}, '
        f"data_dir={prepare_dir!r}).download_and_prepare(file_format='array_record')\" "
        "and copy that directory here; then pass it as data_dir or set TFDS_DATA_DIR. "
        "(A dataset prepared in the default tfrecord format cannot be read without TensorFlow.)"
    )


def _open_split(tfds, tfds_name: str, split: str, data_dir: str | None):
    try:
        return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
    except (NotImplementedError, ValueError) as e:
        # Given a data_dir, TFDS reports a missing dataset as
        # NotImplementedError: without a dataset_info.json it assumes the
        # tfrecord format, which has no random access (the same error as for a
        # dataset prepared as tfrecord); ValueError when the dataset info names
        # no file format.
        raise FileNotFoundError(_not_prepared_message(tfds_name, data_dir)) from e
    except KeyError as e:
        # Without a data_dir, tfds.data_source itself asks for the array_record
        # format, so a missing dataset passes the format check above and fails
        # later, on its empty split dict ("`splits` is empty ... not been
        # generated yet"). Only a dataset that is really not prepared is
        # reported as such; any other KeyError is re-raised unchanged.
        if tfds.builder(tfds_name, data_dir=data_dir).is_prepared():
            raise
        raise FileNotFoundError(_not_prepared_message(tfds_name, data_dir)) from e


def _read_all(source, name: str, split: str, spec: TfdsImageSource):
    """Reads a whole split with batched reads into uint8 images and int32 labels."""
    n = len(source)
    stored_shape = spec.input_shape
    if spec.transpose:
        stored_shape = (stored_shape[1], stored_shape[0], *stored_shape[2:])
    images = np.empty((n, *stored_shape), np.uint8)
    labels = np.empty(n, np.int32)
    for start in range(0, n, _READ_CHUNK):
        keys = list(range(start, min(start + _READ_CHUNK, n)))
        examples = source.__getitems__(keys)
        batch = np.stack([np.asarray(ex["image"]) for ex in examples])
        if batch.shape[1:] != stored_shape:
            raise ValueError(
                f"{name!r} {split} images have shape {batch.shape[1:]}, expected {stored_shape}."
            )
        images[start : start + len(keys)] = batch
        labels[start : start + len(keys)] = [ex["label"] for ex in examples]
    if n and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise ValueError(
            f"{name!r} {split} labels span [{labels.min()}, {labels.max()}], "
            f"expected [0, {spec.num_classes - 1}]."
        )
    if spec.transpose:
        images = np.swapaxes(images, 1, 2)
    return np.divide(images, np.float32(255.0), dtype=np.float32), labels


def load_tfds(
    name: str, data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reads a prepared TFDS image dataset (never downloads).

    Args:
      name: one of ``TFDS_DATASETS``: "mnist", "fashion_mnist", "emnist"
        (``emnist/balanced``, 47 classes, transposed to upright), "cifar10",
        "cifar100".
      data_dir: TFDS data directory holding the prepared dataset; ``None`` uses
        the ``TFDS_DATA_DIR`` environment variable if set (read at call time),
        else the TFDS default ``~/tensorflow_datasets``.

    Returns:
      ``(x_train, y_train, x_test, y_test)``: TFDS's train and test splits, x
      float32 [n, H, W, C] scaled from [0, 255] to [0, 1], y int32 [n].

    Raises:
      ImportError: tensorflow_datasets is not installed.
      FileNotFoundError: the dataset is not prepared (as array_record) in the
        data directory; the message says how to prepare it.
    """
    if name not in TFDS_DATASETS:
        raise ValueError(f"Unknown TFDS dataset {name!r}; available: {', '.join(TFDS_DATASETS)}.")
    spec = TFDS_DATASETS[name]
    tfds = _import_tfds()
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR") or None
    data_dir = None if data_dir is None else os.fspath(data_dir)
    arrays = []
    for split in ("train", "test"):
        source = _open_split(tfds, spec.tfds_name, split, data_dir)
        arrays.extend(_read_all(source, name, split, spec))
    return tuple(arrays)
