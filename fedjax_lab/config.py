"""The experiment configuration: every value that changes a run's results.

:func:`get_config` returns the defaults (DFedSAM on scikit-learn's digits, Dirichlet(0.3)
label skew, ring of 100 clients; about two minutes on a 2-core CPU). Overrides come as
``key=value`` strings (:func:`apply_overrides`); values are parsed to the type of the default,
and an unknown key is an error that names the closest known keys.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import pathlib
from typing import Iterable

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """The default configuration (each field commented)."""
    c = ml_collections.ConfigDict()
    # What to run.
    c.algorithm = "dfedsam"  # fedjax-lab list shows the choices
    c.dataset = "digits"
    c.model = "mlp"
    c.topology = "ring"  # decentralized algorithms only
    c.num_clients = 100
    c.rounds = 200
    c.seed = 0  # model init, client sampling, batches
    # Data.
    c.data_seed = 0  # own seed of the partition, test splits and random topologies
    c.partition = ""  # "" = the dataset's own default (dirichlet for digits)
    c.alpha = 0.3  # Dirichlet concentration of the label skew
    c.classes_per_client = 2  # pathological partition
    c.test_examples_per_client = 100
    c.synthetic_alpha = 1.0  # FedProx synthetic(alpha, beta)
    c.synthetic_beta = 1.0
    c.data_dir = ""  # TFDS data directory; "" = $TFDS_DATA_DIR or TFDS's default
    # Local training.
    c.local_steps = 10  # K
    c.batch_size = 32
    c.learning_rate = 0.1
    c.lr_decay = 0.998  # local updates scaled by lr_decay ** round
    c.momentum = 0.9  # dfedavgm only
    c.rho = 0.05  # SAM radius (fedsam, dfedsam, dfedsam_mgs)
    c.adaptive_sam = False  # ASAM instead of SAM
    # Communication.
    c.gossip_steps = 0  # Q; 0 = the algorithm's default (1, or 4 for dfedsam_mgs)
    c.order = "train_then_gossip"  # or "gossip_then_train" (released DFedSAM code)
    # "dense", "sparse" or "auto": sparse when W is < 10% nonzero, in the circulant form
    # (gossip.CirculantMixing) when W is also circulant and static.
    c.gossip = "auto"
    c.topology_p = 0.0  # erdos_renyi edge probability; 0 = topology default
    c.topology_k = 0  # random_in_neighbours k; 0 = topology default
    c.clients_per_round = 10  # server-based algorithms: m of N each round
    c.server_learning_rate = 1.0
    # Execution.
    c.strategy = (
        "auto"  # "auto" (per backend, within the memory budget), "vmap", "chunked", "sequential"
    )
    c.chunk_size = 0  # clients per chunk for "chunked"
    # Split the client axis over all devices (jax.devices()): "yes", "no", or "auto" (when
    # there are several devices and the cohort divides evenly between them).
    c.shard_clients = "auto"
    c.memory_budget_gb = 0.0  # for "auto"; 0 = 80% of the device's (or host's) memory
    c.unroll = 1  # lax.scan unroll of the local steps
    c.eval_every = 10  # rounds between evaluations (the last round always)
    c.progress = True  # show a progress bar
    # Checkpoints (orbax) in <workdir>/checkpoints.
    c.checkpoint_every = 50  # rounds between checkpoints (and the last); 0 = no checkpoints
    c.keep_checkpoints = 3  # how many of the newest checkpoints to keep
    return c


def load_config_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """The ``get_config()`` of a Python config file (such as ``experiments/*.py``)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No config file at {path}.")
    spec = importlib.util.spec_from_file_location(f"_fedjax_lab_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"The config file {path} defines no get_config() function.")
    return from_dict(module.get_config().to_dict())


def from_dict(values: dict) -> ml_collections.ConfigDict:
    """The default config updated with ``values`` (such as a run's ``config.json``).

    Every key must be a known one; keys left out keep their defaults.
    """
    return update(get_config(), **values)


def _parse(key: str, text: str, default):
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"Expected a boolean for {key!r}, got {text!r}.")
    if isinstance(default, (int, float)):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(
                f"Expected a value of type {type(default).__name__} for {key!r}, got {text!r}."
            ) from None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(default, int) and not isinstance(value, int))
        ):
            raise ValueError(
                f"Expected a value of type {type(default).__name__} for {key!r}, got {text!r}."
            )
        return type(default)(value)
    return text


def check_key(config: ml_collections.ConfigDict, key: str) -> None:
    """Raises ValueError naming the closest known keys when ``key`` is not in ``config``."""
    if key not in config:
        close = difflib.get_close_matches(key, list(config.keys()), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown config key {key!r}.{hint} Known keys: {', '.join(sorted(config.keys()))}."
        )


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Iterable[str]
) -> ml_collections.ConfigDict:
    """Returns a copy of ``config`` with ``key=value`` overrides applied."""
    config = ml_collections.ConfigDict(config.to_dict())
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"Expected an override of the form key=value, got {item!r}.")
        check_key(config, key)
        config[key] = _parse(key, text, config[key])
    return config


def update(config: ml_collections.ConfigDict, **values) -> ml_collections.ConfigDict:
    """Returns a copy of ``config`` with typed values set (keys checked)."""
    config = ml_collections.ConfigDict(config.to_dict())
    for key, value in values.items():
        check_key(config, key)
        config[key] = value
    return config
