"""Algorithms by name, built from an experiment config.

Each algorithm module declares an :class:`~fedjax_lab.algorithms.base.AlgorithmSpec` next
to its factory (its builder, config section and defaults); adding an algorithm is its
module plus one line in ``_SPECS``.
"""

from __future__ import annotations

import ml_collections

from fedjax_lab import local
from fedjax_lab import validation
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms.decentralized import DFEDAVG
from fedjax_lab.algorithms.decentralized import DFEDAVGM
from fedjax_lab.algorithms.decentralized import DFEDSAM
from fedjax_lab.algorithms.decentralized import DFEDSAM_MGS
from fedjax_lab.algorithms.lottery import FED_LTP
from fedjax_lab.algorithms.personalized import DFEDALT
from fedjax_lab.algorithms.personalized import DFEDPGP
from fedjax_lab.algorithms.personalized import DFEDSALT
from fedjax_lab.algorithms.personalized import FEDPER
from fedjax_lab.algorithms.personalized import FEDREP
from fedjax_lab.algorithms.private import DP_DFEDSAM
from fedjax_lab.algorithms.private import DP_FEDAVG
from fedjax_lab.algorithms.private import DP_FEDSAM
from fedjax_lab.algorithms.private import DP_FEDSAM_TOPK
from fedjax_lab.algorithms.server import FEDAVG
from fedjax_lab.algorithms.server import FEDSAM
from fedjax_lab.algorithms.server import FEDSPEED
from fedjax_lab.algorithms.zeroth_order import FED_BBPT
from fedjax_lab.algorithms.zeroth_order import FEDKSEED
from fedjax_lab.algorithms.zeroth_order import FES_PIT
from fedjax_lab.algorithms.zeroth_order import FES_PTZO

_SPECS: dict[str, base.AlgorithmSpec] = {
    s.name: s
    for s in (
        FEDAVG,
        FEDSAM,
        FEDSPEED,
        DFEDAVG,
        DFEDAVGM,
        DFEDSAM,
        DFEDSAM_MGS,
        DP_FEDAVG,
        DP_FEDSAM,
        DP_FEDSAM_TOPK,
        DP_DFEDSAM,
        FED_LTP,
        FEDPER,
        FEDREP,
        DFEDALT,
        DFEDSALT,
        DFEDPGP,
        FED_BBPT,
        FES_PIT,
        FES_PTZO,
        FEDKSEED,
    )
}


def register(algorithm: base.AlgorithmSpec, *, replace: bool = False) -> None:
    """Adds an algorithm of your own to the registry (the config, the runner and the CLI
    then know it by name).

    Args:
      algorithm: its :class:`~fedjax_lab.algorithms.base.AlgorithmSpec`; its section's
        fields must be dotted keys under its name.
      replace: allow replacing an algorithm registered under the same name.
    """
    if not isinstance(algorithm, base.AlgorithmSpec):
        raise ValueError(f"Expected an AlgorithmSpec, got {type(algorithm).__name__}.")
    if algorithm.name in _SPECS and not replace:
        raise ValueError(f"An algorithm named {algorithm.name!r} is registered already.")
    from fedjax_lab import config as config_lib

    shared = {f.key.split(".")[0] for f in config_lib.FIELDS}
    for field in algorithm.fields:
        if "." not in field.key or field.key.split(".")[0] in shared:
            raise ValueError(
                f"Expected {algorithm.name}'s config fields in a section of its own (such as "
                f"{algorithm.name!r}), got {field.key!r}."
            )
    _SPECS[algorithm.name] = algorithm


def unregister(name: str) -> None:
    """Removes an algorithm added with :func:`register`."""
    spec(name)
    del _SPECS[name]


def available_algorithms() -> tuple[str, ...]:
    """The registered names, in ``fedjax-lab list`` order."""
    return tuple(_SPECS)


def spec(name: str) -> base.AlgorithmSpec:
    """The registered :class:`~fedjax_lab.algorithms.base.AlgorithmSpec` of ``name``."""
    validation.check_name("algorithm", name, _SPECS)
    return _SPECS[name]


def build_algorithm(config: ml_collections.ConfigDict, loss_fn: local.LossFn) -> base.Algorithm:
    """The algorithm ``config.algorithm`` with the config's hyperparameters.

    The config is resolved first (:func:`fedjax_lab.config.resolve`), so an unresolved one
    from :func:`fedjax_lab.config.get_config` works too.
    """
    from fedjax_lab import config as config_lib

    config = config_lib.resolve(config)
    return spec(config.algorithm).build(config, loss_fn)
