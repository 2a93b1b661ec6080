"""Optax gradient transformations used by the federated algorithms."""

from fedjax_lab.transforms.proximal import proximal
from fedjax_lab.transforms.sharpness_aware import sam
from fedjax_lab.transforms.sharpness_aware import sam_perturbation
from fedjax_lab.transforms.sharpness_aware import sam_sgd

__all__ = (
    "proximal",
    "sam",
    "sam_perturbation",
    "sam_sgd",
)
