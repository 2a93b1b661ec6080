"""The run machinery on top of the maths: from a config to finished, recorded runs.

* :mod:`fedjax_lab.runner.experiment`: a config to a run: data, model, algorithm, round loop.
* :mod:`fedjax_lab.runner.execution`: the client strategy per backend within a memory budget.
* :mod:`fedjax_lab.runner.checkpoints`: orbax checkpoints of a run, verified on restore.
* :mod:`fedjax_lab.runner.fingerprints`: the sha256 fingerprint of a pytree.
* :mod:`fedjax_lab.runner.locking`: one run per workdir at a time (a file lock).
* :mod:`fedjax_lab.runner.stopping`: SIGTERM / SIGINT end a run at a round boundary.
* :mod:`fedjax_lab.runner.records`: ``metrics.jsonl`` and TensorBoard event files.
* :mod:`fedjax_lab.runner.plotting`: PNG figures of runs and topologies.
* :mod:`fedjax_lab.runner.comparisons`: paired differences over seeds and their verdicts.
* :mod:`fedjax_lab.runner.reproduce`: the seed papers' claims as experiment sets.
* :mod:`fedjax_lab.runner.cli`: the ``fedjax-lab`` command.

Submodules are imported on first use: ``import fedjax_lab.runner`` loads none of them (nor
orbax, tensorboardX or matplotlib, which they need).
"""

import importlib

__all__ = (
    "checkpoints",
    "cli",
    "comparisons",
    "execution",
    "experiment",
    "fingerprints",
    "locking",
    "plotting",
    "records",
    "reproduce",
    "stopping",
)


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"fedjax_lab.runner.{name}")
    raise AttributeError(f"module 'fedjax_lab.runner' has no attribute {name!r}")
