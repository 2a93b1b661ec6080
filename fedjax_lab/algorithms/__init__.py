"""Federated algorithms: factories returning pure, jittable round functions.

Every algorithm is one of two round skeletons (:func:`server_round`, :func:`gossip_round`)
built from values: a client update (:func:`client_update`: local phases, an update
transform, persistent per-client state, step counts), a communication piece (what is sent,
how it is counted and combined: :func:`server_mean`, :func:`encoded`, :func:`gossip`,
:func:`push_sum`, :func:`sparse`, :func:`with_step_traffic`) and, for a server round, a
cohort and a :func:`server_rule`. Nothing here reads a config: :mod:`fedjax_lab.specs`
builds these factories' arguments from one.
"""

from fedjax_lab.algorithms.base import Algorithm
from fedjax_lab.algorithms.base import Exchange
from fedjax_lab.algorithms.base import HostHook
from fedjax_lab.algorithms.base import State
from fedjax_lab.algorithms.client import ClientOutput
from fedjax_lab.algorithms.client import ClientUpdate
from fedjax_lab.algorithms.client import Persistent
from fedjax_lab.algorithms.client import client_update
from fedjax_lab.algorithms.client import fixed_step_counts
from fedjax_lab.algorithms.client import uniform_step_counts
from fedjax_lab.algorithms.cohorts import Cohort
from fedjax_lab.algorithms.cohorts import fixed_cohort
from fedjax_lab.algorithms.cohorts import poisson_cohort
from fedjax_lab.algorithms.communication import Broadcast
from fedjax_lab.algorithms.communication import Communication
from fedjax_lab.algorithms.communication import encoded
from fedjax_lab.algorithms.communication import gossip
from fedjax_lab.algorithms.communication import model_bytes
from fedjax_lab.algorithms.communication import push_sum
from fedjax_lab.algorithms.communication import server_mean
from fedjax_lab.algorithms.communication import sparse
from fedjax_lab.algorithms.communication import with_step_traffic
from fedjax_lab.algorithms.decentralized import decentralized
from fedjax_lab.algorithms.drift import feddyn
from fedjax_lab.algorithms.drift import fedprox
from fedjax_lab.algorithms.drift import scaffold
from fedjax_lab.algorithms.decentralized import dfedavg
from fedjax_lab.algorithms.decentralized import dfedavgm
from fedjax_lab.algorithms.decentralized import dfedsam
from fedjax_lab.algorithms.rounds import ServerRule
from fedjax_lab.algorithms.rounds import gossip_round
from fedjax_lab.algorithms.rounds import server_round
from fedjax_lab.algorithms.rounds import server_rule
from fedjax_lab.algorithms.server import fedavg
from fedjax_lab.algorithms.server import fedsam
from fedjax_lab.algorithms.server import fedspeed
from fedjax_lab.algorithms.zeroth_order import fed_bbpt
from fedjax_lab.algorithms.zeroth_order import fedkseed
from fedjax_lab.algorithms.zeroth_order import fes

__all__ = (
    "Algorithm",
    "Broadcast",
    "ClientOutput",
    "ClientUpdate",
    "Cohort",
    "Communication",
    "Exchange",
    "HostHook",
    "Persistent",
    "ServerRule",
    "State",
    "client_update",
    "decentralized",
    "dfedavg",
    "dfedavgm",
    "dfedsam",
    "encoded",
    "fed_bbpt",
    "fedavg",
    "feddyn",
    "fedkseed",
    "fedprox",
    "fedsam",
    "fedspeed",
    "fes",
    "fixed_cohort",
    "fixed_step_counts",
    "gossip",
    "gossip_round",
    "model_bytes",
    "poisson_cohort",
    "push_sum",
    "scaffold",
    "server_mean",
    "server_round",
    "server_rule",
    "sparse",
    "uniform_step_counts",
    "with_step_traffic",
)
