"""Federated algorithms: factories returning pure, jittable round functions."""

from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.algorithms.base import model_bytes
from fedjax_lab.algorithms.decentralized import DecentralizedState
from fedjax_lab.algorithms.decentralized import decentralized
from fedjax_lab.algorithms.decentralized import dfedavg
from fedjax_lab.algorithms.decentralized import dfedavgm
from fedjax_lab.algorithms.decentralized import dfedsam
from fedjax_lab.algorithms.registry import available_algorithms
from fedjax_lab.algorithms.registry import build_algorithm
from fedjax_lab.algorithms.server import ServerState
from fedjax_lab.algorithms.server import fedavg
from fedjax_lab.algorithms.server import fedsam

__all__ = (
    "Algorithm",
    "DecentralizedState",
    "ServerState",
    "available_algorithms",
    "build_algorithm",
    "decentralized",
    "dfedavg",
    "dfedavgm",
    "dfedsam",
    "fedavg",
    "fedsam",
    "model_bytes",
)
