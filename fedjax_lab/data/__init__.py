"""Federated datasets: sources, partitioners, padded client arrays, batch sampling."""

from fedjax_lab.data.client_data import ClientArrays
from fedjax_lab.data.client_data import sample_batches
from fedjax_lab.data.client_data import stack_clients
from fedjax_lab.data.federated import FederatedDataset
from fedjax_lab.data.federated import available_datasets
from fedjax_lab.data.federated import available_partitions
from fedjax_lab.data.federated import default_partition
from fedjax_lab.data.federated import load_centralized
from fedjax_lab.data.federated import make_federated_dataset
from fedjax_lab.data.federated import task_shape
from fedjax_lab.data.partition import dirichlet
from fedjax_lab.data.partition import dirichlet_per_class
from fedjax_lab.data.partition import iid
from fedjax_lab.data.partition import label_proportions
from fedjax_lab.data.partition import pathological
from fedjax_lab.data.partition import per_client_test_sets
from fedjax_lab.data.sources import load_digits
from fedjax_lab.data.sources import synthetic_federated
from fedjax_lab.data.tfds_sources import load_tfds

__all__ = [
    "ClientArrays",
    "FederatedDataset",
    "available_datasets",
    "available_partitions",
    "default_partition",
    "dirichlet",
    "dirichlet_per_class",
    "iid",
    "label_proportions",
    "load_centralized",
    "load_digits",
    "load_tfds",
    "make_federated_dataset",
    "pathological",
    "per_client_test_sets",
    "sample_batches",
    "stack_clients",
    "synthetic_federated",
    "task_shape",
]
