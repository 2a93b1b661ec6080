"""Algorithms by name, built from an experiment config.

Each family's module in :mod:`fedjax_lab.specs` declares an
:class:`~fedjax_lab.specs.base.AlgorithmSpec` per algorithm (its builder, config section
and defaults); adding an algorithm is its spec plus one line in ``_SPECS``, or
:func:`register` from one's own code.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from fedjax_lab import local
from fedjax_lab import validation
from fedjax_lab.algorithms import base as algorithm_base
from fedjax_lab.specs import base
from fedjax_lab.specs import decentralized
from fedjax_lab.specs import drift
from fedjax_lab.specs import lottery
from fedjax_lab.specs import personalized
from fedjax_lab.specs import private
from fedjax_lab.specs import server
from fedjax_lab.specs import zeroth_order

_SPECS: dict[str, base.AlgorithmSpec] = {
    s.name: s
    for s in (
        server.FEDAVG,
        server.FEDSAM,
        server.FEDSPEED,
        drift.SCAFFOLD,
        drift.FEDDYN,
        drift.FEDPROX,
        decentralized.DFEDAVG,
        decentralized.DFEDAVGM,
        decentralized.DFEDSAM,
        decentralized.DFEDSAM_MGS,
        private.DP_FEDAVG,
        private.DP_FEDSAM,
        private.DP_FEDSAM_TOPK,
        private.DP_DFEDSAM,
        lottery.FED_LTP,
        personalized.FEDPER,
        personalized.FEDREP,
        personalized.DFEDALT,
        personalized.DFEDSALT,
        personalized.DFEDPGP,
        zeroth_order.FED_BBPT,
        zeroth_order.FES_PIT,
        zeroth_order.FES_PTZO,
        zeroth_order.FEDKSEED,
    )
}

# Sections whose keys belong to the algorithm: a key of them it does not read must keep its
# default. (The runner reads the rest: data, model, topology, execution.)
ALGORITHM_SECTIONS = ("local", "sam", "server", "communication")
PRETRAINED = "pretrained"  # config.model: the algorithm's pre-trained model (zo.model)
RUNNER_KEYS = (
    "local.steps",
    "local.batch_size",
    "communication.topology",
    "communication.form",
    "communication.topology_p",
    "communication.topology_k",
)


def register(algorithm: base.AlgorithmSpec, *, replace: bool = False) -> None:
    """Adds an algorithm of your own to the registry (the config, the runner and the CLI
    then know it by name).

    Args:
      algorithm: its :class:`~fedjax_lab.specs.base.AlgorithmSpec`; its section's fields
        must be dotted keys in a section of its own (not a shared one).
      replace: allow replacing an algorithm registered under the same name.
    """
    from fedjax_lab.specs import config as config_lib  # config reads the registry

    if not isinstance(algorithm, base.AlgorithmSpec):
        raise ValueError(f"Expected an AlgorithmSpec, got {type(algorithm).__name__}.")
    if algorithm.name in _SPECS and not replace:
        raise ValueError(f"An algorithm named {algorithm.name!r} is registered already.")
    shared = {f.section for f in config_lib.FIELDS}
    for field in algorithm.fields:
        if field.section is None or field.section in shared:
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
    """The registered :class:`~fedjax_lab.specs.base.AlgorithmSpec` of ``name``."""
    validation.check_name("algorithm", name, _SPECS)
    return _SPECS[name]


def build_algorithm(
    config: ml_collections.ConfigDict, loss_fn: local.LossFn
) -> algorithm_base.Algorithm:
    """The algorithm ``config.algorithm`` with the config's hyperparameters.

    The config is resolved first (:func:`fedjax_lab.specs.config.resolve`), so an
    unresolved one from :func:`fedjax_lab.specs.config.get_config` works too. A key of the
    algorithm's sections that it does not read and that differs from its default is a
    ValueError naming the keys it does read.
    """
    from fedjax_lab.specs import config as config_lib

    return build_resolved(config_lib.resolve(config), loss_fn)


def build_resolved(config: ml_collections.ConfigDict, loss_fn: local.LossFn):
    """:func:`build_algorithm` of a config resolved already (the runner resolves once)."""
    algorithm, read = _build_recording(config, loss_fn)
    _check_unread(config, read)
    return algorithm


def keys_read(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The dotted keys ``config.algorithm`` reads to build itself (its model's keys
    included), sorted: the keys that change what it computes."""
    from fedjax_lab.specs import config as config_lib

    _, read = _build_recording(config_lib.resolve(config), _no_loss)
    return tuple(sorted(read))


def _no_loss(params, batch):
    raise TypeError("keys_read builds an algorithm to see what it reads; it never trains.")


def _build_recording(config: ml_collections.ConfigDict, loss_fn: local.LossFn):
    """The algorithm of a resolved config, and the keys its builder (and model) read."""
    algorithm_spec = spec(config.algorithm)
    view = _Recorder(config)
    algorithm = algorithm_spec.build(view, loss_fn)
    if algorithm_spec.model is not None and config.model == PRETRAINED:
        view.read.update(algorithm_spec.model_keys)
    return algorithm, view.read


class _Recorder:
    """A read-only view of a config that records the dotted keys read through it."""

    def __init__(self, node: ml_collections.ConfigDict, prefix: str = "", read=None):
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "read", set() if read is None else read)

    def __getattr__(self, name: str) -> Any:
        return self[name]

    def __getitem__(self, name: str) -> Any:
        value = self._node[name]
        key = f"{self._prefix}{name}"
        if isinstance(value, ml_collections.ConfigDict):
            return _Recorder(value, f"{key}.", self.read)
        self.read.add(key)
        return value

    def __contains__(self, name: str) -> bool:
        return name in self._node

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("An algorithm's builder reads its config; it may not change it.")


def _check_unread(config: ml_collections.ConfigDict, read: set[str]) -> None:
    from fedjax_lab.specs import config as config_lib

    own = {f.section for f in spec(config.algorithm).fields}
    sections = set(ALGORITHM_SECTIONS) | own
    defaults = config_lib.flatten(config_lib.defaults_for(config).to_dict())
    for key, value in config_lib.flatten(config.to_dict()).items():
        section = key.split(".")[0] if "." in key else None
        if section not in sections or key in RUNNER_KEYS or key in read:
            continue
        if value != defaults.get(key):
            used = sorted(k for k in read if k.split(".")[0] in sections)
            raise ValueError(
                f"{key}={value!r} does not apply to {config.algorithm}, which reads "
                f"{', '.join(used)}; leave {key} at its default ({defaults.get(key)!r})."
            )
