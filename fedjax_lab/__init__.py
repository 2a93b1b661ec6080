"""fedjax_lab: federated learning algorithms as pure, vmapped JAX functions.

A round of any algorithm is ``state, metrics = algorithm.round(state, mixing, batches, key)``
over clients stacked on a leading axis. The pieces:

* :mod:`fedjax_lab.algorithms`: FedAvg, FedSAM, FedSpeed, DFedAvg, DFedAvgM, DFedSAM,
  DFedSAM-MGS, the DP, personalized, lottery-ticket and zeroth-order families, each a
  composition of pieces (:func:`fedjax_lab.algorithms.compose`).
* :mod:`fedjax_lab.transforms`: optax transformations (SAM, proximal pull, client-level DP:
  clipping, Gaussian noise, top-k, pruning, zeroth-order estimators);
  :mod:`fedjax_lab.privacy`: their accounting.
* :mod:`fedjax_lab.pretrained`: the shipped pre-trained models and checkpoints of your own;
  :mod:`fedjax_lab.black_box`: models reachable only through their forward function.
* :mod:`fedjax_lab.partition`: shared and personal parts of a model;
  :mod:`fedjax_lab.gradients`: gradient hooks of local training;
  :mod:`fedjax_lab.randomness`: the random streams of a run.
* :mod:`fedjax_lab.topology` and :mod:`fedjax_lab.gossip`: mixing matrices and gossip.
* :mod:`fedjax_lab.clients` and :mod:`fedjax_lab.local`: mapping over clients, local steps.
* :mod:`fedjax_lab.data`, :mod:`fedjax_lab.models`, :mod:`fedjax_lab.metrics`.
* :mod:`fedjax_lab.experiment` and :mod:`fedjax_lab.config`: config-driven runs, with
  :mod:`fedjax_lab.checkpoints` (verified), :mod:`fedjax_lab.locking` (one run per
  workdir), :mod:`fedjax_lab.stopping` (graceful stop), :mod:`fedjax_lab.records` and
  :mod:`fedjax_lab.plotting`.
"""

from fedjax_lab import algorithms
from fedjax_lab import black_box
from fedjax_lab import checkpoints
from fedjax_lab import clients
from fedjax_lab import config
from fedjax_lab import data
from fedjax_lab import execution
from fedjax_lab import experiment
from fedjax_lab import fingerprints
from fedjax_lab import gossip
from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab import locking
from fedjax_lab import metrics
from fedjax_lab import models
from fedjax_lab import objectives
from fedjax_lab import partition
from fedjax_lab import pretrained
from fedjax_lab import privacy
from fedjax_lab import randomness
from fedjax_lab import records
from fedjax_lab import sharding
from fedjax_lab import stopping
from fedjax_lab import topology
from fedjax_lab import transforms

__version__ = "0.1.0"


def __getattr__(name: str):
    # matplotlib is imported only when plots are asked for.
    if name == "plotting":
        import importlib

        return importlib.import_module("fedjax_lab.plotting")
    raise AttributeError(f"module 'fedjax_lab' has no attribute {name!r}")


__all__ = (
    "algorithms",
    "black_box",
    "checkpoints",
    "clients",
    "config",
    "data",
    "execution",
    "experiment",
    "fingerprints",
    "gossip",
    "gradients",
    "local",
    "locking",
    "metrics",
    "models",
    "objectives",
    "partition",
    "pretrained",
    "privacy",
    "plotting",
    "randomness",
    "records",
    "sharding",
    "stopping",
    "topology",
    "transforms",
)
