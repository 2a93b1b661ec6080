"""Federated algorithms: factories returning pure, jittable round functions.

Every algorithm is a composition of pieces (:func:`compose`): local phases, an update
transform, a communication piece and a server update, with optional persistent per-client
state and per-client step counts.
"""

from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.algorithms.base import AlgorithmSpec
from fedjax_lab.algorithms.base import HostHook
from fedjax_lab.algorithms.base import State
from fedjax_lab.algorithms.base import model_bytes
from fedjax_lab.algorithms.communication import Communication
from fedjax_lab.algorithms.communication import gossip
from fedjax_lab.algorithms.communication import push_sum
from fedjax_lab.algorithms.communication import server_mean
from fedjax_lab.algorithms.decentralized import decentralized
from fedjax_lab.algorithms.decentralized import dfedavg
from fedjax_lab.algorithms.decentralized import dfedavgm
from fedjax_lab.algorithms.decentralized import dfedsam
from fedjax_lab.algorithms.server import fedspeed
from fedjax_lab.algorithms.registry import available_algorithms
from fedjax_lab.algorithms.registry import build_algorithm
from fedjax_lab.algorithms.registry import register
from fedjax_lab.algorithms.rounds import Broadcast
from fedjax_lab.algorithms.rounds import Messages
from fedjax_lab.algorithms.rounds import Persistent
from fedjax_lab.algorithms.rounds import compose
from fedjax_lab.algorithms.rounds import fixed_step_counts
from fedjax_lab.algorithms.rounds import uniform_step_counts
from fedjax_lab.algorithms.server import fedavg
from fedjax_lab.algorithms.server import fedsam
from fedjax_lab.algorithms.zeroth_order import fed_bbpt
from fedjax_lab.algorithms.zeroth_order import fedkseed
from fedjax_lab.algorithms.zeroth_order import fes

__all__ = (
    "Algorithm",
    "AlgorithmSpec",
    "Broadcast",
    "Communication",
    "HostHook",
    "Messages",
    "Persistent",
    "State",
    "available_algorithms",
    "build_algorithm",
    "compose",
    "decentralized",
    "dfedavg",
    "dfedavgm",
    "dfedsam",
    "fed_bbpt",
    "fedavg",
    "fedkseed",
    "fedsam",
    "fedspeed",
    "fes",
    "fixed_step_counts",
    "gossip",
    "model_bytes",
    "push_sum",
    "register",
    "server_mean",
    "uniform_step_counts",
)
