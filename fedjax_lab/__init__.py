"""fedjax_lab: federated learning algorithms as pure, vmapped JAX functions.

A round of any algorithm is ``state, metrics = algorithm.round(state, mixing, batches, key)``
over clients stacked on a leading axis. The package root holds the maths:

* :mod:`fedjax_lab.algorithms`: FedAvg, FedSAM, FedSpeed, SCAFFOLD, FedDyn, FedProx, DFedAvg,
  DFedAvgM, DFedSAM, DFedSAM-MGS, the DP, personalized, lottery-ticket and zeroth-order
  families, each a server round or a gossip round built from pieces
  (:func:`fedjax_lab.algorithms.server_round`, :func:`fedjax_lab.algorithms.gossip_round`).
* :mod:`fedjax_lab.transforms`: optax transformations (SAM, proximal pull, client-level DP:
  clipping, Gaussian noise, top-k, pruning, zeroth-order estimators);
  :mod:`fedjax_lab.privacy`: their accounting.
* :mod:`fedjax_lab.pretrained`: the shipped pre-trained models and checkpoints of your own;
  :mod:`fedjax_lab.black_box`: models reachable only through their forward function.
* :mod:`fedjax_lab.partition`: shared and personal parts of a model;
  :mod:`fedjax_lab.gradients`: gradient hooks of local training;
  :mod:`fedjax_lab.randomness`: the random streams of a run.
* :mod:`fedjax_lab.topology` and :mod:`fedjax_lab.gossip`: mixing matrices and gossip.
* :mod:`fedjax_lab.clients` and :mod:`fedjax_lab.local`: mapping over clients, local steps;
  :mod:`fedjax_lab.sharding`: the client axis over a device mesh.
* :mod:`fedjax_lab.data`, :mod:`fedjax_lab.models`, :mod:`fedjax_lab.metrics`.

On top of the maths:

* :mod:`fedjax_lab.specs`: the experiment config, the algorithm registry and the builders
  from a config to the factories' arguments;
* :mod:`fedjax_lab.runner`: config-driven runs (experiment, verified checkpoints, one run
  per workdir, graceful stop, records, plots, the reproduction suite and the CLI).

Submodules are imported on first use, so ``import fedjax_lab.algorithms`` loads the maths
and nothing of the run machinery.
"""

import importlib

__version__ = "0.1.0"

__all__ = (
    "algorithms",
    "black_box",
    "clients",
    "data",
    "gossip",
    "gradients",
    "local",
    "metrics",
    "models",
    "objectives",
    "partition",
    "pretrained",
    "privacy",
    "randomness",
    "runner",
    "sharding",
    "specs",
    "topology",
    "transforms",
)


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"fedjax_lab.{name}")
    raise AttributeError(f"module 'fedjax_lab' has no attribute {name!r}")
