"""Named federated datasets: a source plus a partition, stacked per client.

To add a dataset (e.g. from TFDS), write a loader and register it in
``_DATASETS``:

* a centralised source: ``load(seed, options) -> (x_train, y_train, x_test,
  y_test)`` NumPy arrays (``options``: ``data_dir``, the TFDS data directory, and
  ``mnist1d_samples``, each read by the sources it concerns); its training set is
  split by one of the partitioners and
  each client's test set is drawn from the global test set with that
  client's training label proportions;
* a naturally partitioned source: ``load(num_clients, seed, iid, options) ->
  (x_train, y_train, x_test, y_test)`` lists of per-client arrays.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fedjax_lab import validation
from fedjax_lab.data import mnist1d
from fedjax_lab.data import partition as partition_lib
from fedjax_lab.data import sources
from fedjax_lab.data import tfds_sources
from fedjax_lab.data.client_data import ClientArrays, stack_clients


class FederatedDataset(NamedTuple):
    """Per-client train and test examples of a named dataset."""

    name: str
    train: ClientArrays
    test: ClientArrays
    num_classes: int
    input_shape: tuple[int, ...]


class _DatasetSpec(NamedTuple):
    load: Callable[..., Any]
    natural: bool  # True: load yields per-client lists; False: centralised arrays.
    partitions: tuple[str, ...]
    default_partition: str
    num_classes: int
    input_shape: tuple[int, ...]


_CENTRAL_PARTITIONS = ("iid", "dirichlet", "dirichlet_per_class", "pathological")


def _digits_loader(variant: str) -> Callable[..., Any]:
    def load(seed: int, options: dict[str, Any]):
        del options  # Bundled with scikit-learn.
        return sources.load_digits(seed, variant=variant)

    return load


def _load_mnist1d(seed: int, options: dict[str, Any]):
    return mnist1d.load(options["mnist1d_samples"], seed)


def _tfds_loader(name: str, inverted: bool = False) -> Callable[..., Any]:
    def load(seed: int, options: dict[str, Any]):
        del seed  # TFDS datasets come with fixed train and test splits.
        data_dir = options["data_dir"]
        x_train, y_train, x_test, y_test = tfds_sources.load_tfds(name, data_dir=data_dir)
        if inverted:  # 1 - x, a domain shift with the same labels
            x_train, x_test = 1.0 - x_train, 1.0 - x_test
        return x_train, y_train, x_test, y_test

    return load


def _load_synthetic(num_clients: int, seed: int, iid: bool, options: dict[str, Any]):
    return sources.synthetic_federated(
        num_clients, options["synthetic_alpha"], options["synthetic_beta"], seed, iid=iid
    )


_DATASETS: dict[str, _DatasetSpec] = {
    "digits": _DatasetSpec(
        _digits_loader("original"), False, _CENTRAL_PARTITIONS, "dirichlet", 10, (8, 8, 1)
    ),
    # Tasks derived from the digits (sources.load_digits): targets for the pre-trained models.
    **{
        f"digits_{variant}": _DatasetSpec(
            _digits_loader(variant),
            False,
            _CENTRAL_PARTITIONS,
            "dirichlet",
            5 if variant in ("low", "high") else 10,
            (8, 8, 1),
        )
        for variant in sources.DIGITS_VARIANTS[1:]
    },
    # Generated from the mnist1d package's templates (fedjax_lab.data.mnist1d), cached on disk.
    "mnist1d": _DatasetSpec(
        _load_mnist1d,
        False,
        _CENTRAL_PARTITIONS,
        "dirichlet",
        mnist1d.NUM_CLASSES,
        (mnist1d.LENGTH,),
    ),
    # "iid" is FedProx's IID synthetic variant (all clients share one distribution).
    "synthetic": _DatasetSpec(_load_synthetic, True, ("natural", "iid"), "natural", 10, (60,)),
    # Prepared TFDS datasets (mnist, fashion_mnist, emnist, cifar10, cifar100), and each
    # inverted (name_inverted: 1 - x), a target for a model pre-trained on the original.
    **{
        name + suffix: _DatasetSpec(
            _tfds_loader(name, inverted=bool(suffix)),
            False,
            _CENTRAL_PARTITIONS,
            "dirichlet",
            source.num_classes,
            source.input_shape,
        )
        for name, source in tfds_sources.TFDS_DATASETS.items()
        for suffix in ("", "_inverted")
    },
}


def available_datasets() -> tuple[str, ...]:
    """Names accepted by :func:`make_federated_dataset`."""
    return tuple(_DATASETS)


def load_centralized(
    name: str,
    seed: int = 0,
    data_dir: str | None = None,
    mnist1d_samples: int = mnist1d.DEFAULT_SAMPLES,
):
    """``(x_train, y_train, x_test, y_test)`` of dataset ``name`` before any partition (for
    central pre-training); ``seed`` draws the split of sources that have no fixed one (and
    generates mnist1d's signals)."""
    validation.check_name("dataset", name, _DATASETS)
    spec = _DATASETS[name]
    if spec.natural:
        raise ValueError(f"Dataset {name!r} is partitioned by nature; it has no central form.")
    return spec.load(seed, {"data_dir": data_dir, "mnist1d_samples": mnist1d_samples})


def task_shape(name: str) -> tuple[int, tuple[int, ...]]:
    """``(num_classes, input_shape)`` of dataset ``name``, without loading it."""
    validation.check_name("dataset", name, _DATASETS)
    return _DATASETS[name].num_classes, _DATASETS[name].input_shape


def default_partition(name: str) -> str:
    """The partition dataset ``name`` uses when none is given."""
    validation.check_name("dataset", name, _DATASETS)
    return _DATASETS[name].default_partition


def available_partitions() -> tuple[str, ...]:
    """All partition names; each dataset supports a subset."""
    return (*_CENTRAL_PARTITIONS, "natural")


def _partition(labels, num_clients, partition, seed, alpha, classes_per_client):
    if partition == "iid":
        return partition_lib.iid(labels, num_clients, seed)
    if partition == "dirichlet":
        return partition_lib.dirichlet(labels, num_clients, alpha, seed)
    if partition == "dirichlet_per_class":
        return partition_lib.dirichlet_per_class(labels, num_clients, alpha, seed)
    return partition_lib.pathological(labels, num_clients, classes_per_client, seed)


def make_federated_dataset(
    name: str,
    num_clients: int,
    *,
    seed: int,
    partition: str | None = None,
    alpha: float = 0.3,
    classes_per_client: int = 2,
    test_examples_per_client: int = 100,
    synthetic_alpha: float = 1.0,
    synthetic_beta: float = 1.0,
    data_dir: str | None = None,
    mnist1d_samples: int = mnist1d.DEFAULT_SAMPLES,
) -> FederatedDataset:
    """Builds a federated dataset.

    Args:
      name: one of :func:`available_datasets`.
      num_clients: number of clients N >= 1.
      seed: seed for the split, the partition and the test sampling.
      partition: ``None`` for the dataset's default ("dirichlet" for digits
        and the TFDS datasets, "natural" for synthetic). digits and the TFDS
        datasets (mnist, fashion_mnist, emnist, cifar10, cifar100) support
        "iid", "dirichlet", "dirichlet_per_class", "pathological"; synthetic
        supports "natural" and "iid" (FedProx's IID synthetic data).
      alpha: Dirichlet concentration (> 0) for the dirichlet partitions.
      classes_per_client: shards per client for "pathological", in [1, C].
      test_examples_per_client: size of each client's test set for centralised
        sources (synthetic clients keep their own held-out 20% instead).
      synthetic_alpha: variance of the per-client model mean (synthetic).
      synthetic_beta: variance of the per-client input mean (synthetic).
      data_dir: TFDS data directory holding the prepared TFDS datasets
        (``None``: ``TFDS_DATA_DIR`` or TFDS's default); ignored by digits and
        synthetic. See :mod:`fedjax_lab.data.tfds_sources`; nothing is
        downloaded.
      mnist1d_samples: how many signals mnist1d generates (train and test together,
        80/20; :mod:`fedjax_lab.data.mnist1d`), from ``seed``.

    Returns:
      The per-client train and test arrays with the dataset's number of
      classes and input shape.
    """
    validation.check_name("dataset", name, available_datasets())
    spec = _DATASETS[name]
    partition = spec.default_partition if partition is None else partition
    validation.check_name("partition", partition, available_partitions())
    if partition not in spec.partitions:
        raise ValueError(
            f"Partition {partition!r} is not valid for dataset {name!r}; "
            f"valid partitions: {', '.join(spec.partitions)}."
        )
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}.")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}.")
    if not 1 <= classes_per_client <= spec.num_classes:
        raise ValueError(
            f"classes_per_client must be in [1, {spec.num_classes}] for {name!r}, got {classes_per_client}."
        )
    if test_examples_per_client < 1:
        raise ValueError(f"test_examples_per_client must be >= 1, got {test_examples_per_client}.")

    if spec.natural:
        options = {"synthetic_alpha": synthetic_alpha, "synthetic_beta": synthetic_beta}
        x_tr, y_tr, x_te, y_te = spec.load(num_clients, seed, partition == "iid", options)
    else:
        partition_seed, test_seed = np.random.SeedSequence(seed).generate_state(2)
        options = {"data_dir": data_dir, "mnist1d_samples": mnist1d_samples}
        x_train, y_train, x_test, y_test = spec.load(seed, options)
        parts = _partition(
            y_train, num_clients, partition, partition_seed, alpha, classes_per_client
        )
        props = partition_lib.label_proportions(y_train, parts, spec.num_classes)
        tests = partition_lib.per_client_test_sets(
            y_test, props, test_examples_per_client, test_seed
        )
        x_tr, y_tr = [x_train[p] for p in parts], [y_train[p] for p in parts]
        x_te, y_te = [x_test[t] for t in tests], [y_test[t] for t in tests]
    return FederatedDataset(
        name=name,
        train=stack_clients(x_tr, y_tr),
        test=stack_clients(x_te, y_te),
        num_classes=spec.num_classes,
        input_shape=spec.input_shape,
    )
