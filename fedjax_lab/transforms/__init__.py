"""Optax gradient transformations used by the federated algorithms."""

from fedjax_lab.transforms.sharpness_aware import sam
from fedjax_lab.transforms.sharpness_aware import sam_perturbation

__all__ = (
    "sam",
    "sam_perturbation",
)
