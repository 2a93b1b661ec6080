"""The experiment configuration: every value that changes a run's results, in sections.

The config is an ``ml_collections.ConfigDict`` with a few top-level keys (what to run) and
one section per concern::

  data           partition, label skew, per-client test sets, TFDS directory
  local          local steps, batch size, learning rate and its decay, momentum
  sam            SAM radius and variant
  server         cohort size, server optimizer and learning rate
  communication  topology, gossip steps, update order, mixing form
  execution      client strategy, sharding, memory budget

plus the section of the chosen algorithm, if it has one (``fedspeed``, say), declared with
its spec (:mod:`fedjax_lab.specs`). Every key is declared once, with its default and a
comment, as a :class:`~fedjax_lab.specs.fields.Field`; ``fedjax-lab config --algorithm
NAME`` prints them. Each algorithm owns its section: switching algorithms drops the
sections the new one does not declare, and a key of the algorithm's sections that it does
not read may not leave its default (:func:`fedjax_lab.specs.build_algorithm`).

Keys whose default depends on something else start as ``None`` and are filled in by
:func:`resolve` (the dataset's own partition, the algorithm's gossip steps, 10% of the
clients per round...), so a run's ``config.json`` holds the values it really used. A key
that stays ``None`` after resolution does not apply (``communication.topology_p`` on a ring).

Overrides come as dotted ``key=value`` strings (:func:`apply_overrides`, ``--set`` on the
command line, e.g. ``server.learning_rate=0.5``); values are parsed to the key's declared
type, and an unknown key is an error that names the closest known keys.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import pathlib
from typing import Any, Iterable

import ml_collections

from fedjax_lab import validation
from fedjax_lab.specs import registry
from fedjax_lab.specs.fields import Field


FIELDS: tuple[Field, ...] = (
    Field("algorithm", "dfedsam", "fedjax-lab list shows the choices"),
    Field(
        "dataset",
        None,
        "digits, a task derived from them (digits_inverted, ...), mnist1d, synthetic, or a "
        "TFDS dataset; None = digits, or the algorithm's target task (zeroth-order family)",
        str,
    ),
    Field(
        "model",
        None,
        "mlp, fedavg_cnn, emnist_cnn, mnist1d_mlp, mnist1d_cnn, resnet18, vgg11, vit, or "
        "pretrained (zo.model, tuned); None = mlp, or pretrained for the algorithms that "
        "tune one",
        str,
    ),
    Field("num_clients", 100, "N, the client population"),
    Field("rounds", 200, "communication rounds"),
    Field("seed", 0, "model init, client sampling, batches, local training"),
    Field("eval_every", 10, "rounds between evaluations (the last round always)"),
    Field("progress", True, "show a progress bar"),
    Field("checkpoint_every", 50, "rounds between checkpoints (and the last); 0 = none"),
    Field("keep_checkpoints", 3, "how many of the newest checkpoints to keep"),
    Field("data.seed", 0, "own seed of the partition, test splits and random topologies"),
    Field("data.partition", None, "None = the dataset's default (dirichlet for digits)", str),
    Field("data.alpha", 0.3, "Dirichlet concentration of the label skew"),
    Field("data.classes_per_client", 2, "classes per client of the pathological partition"),
    Field("data.test_examples_per_client", 100, "size of each client's test split"),
    Field("data.synthetic_alpha", 1.0, "FedProx synthetic(alpha, beta): model heterogeneity"),
    Field("data.synthetic_beta", 1.0, "FedProx synthetic(alpha, beta): data heterogeneity"),
    Field("data.data_dir", None, "TFDS data directory; None = $TFDS_DATA_DIR or TFDS's", str),
    Field(
        "data.mnist1d_samples",
        20_000,
        "signals mnist1d generates from data.seed (80% train, 20% test), cached on disk",
    ),
    Field(
        "data.mnist1d_generation",
        None,
        "filled by resolve for mnist1d: every argument of its generation (JSON), a record",
        str,
    ),
    Field("local.steps", 10, "K, local steps per round"),
    Field("local.batch_size", 32, "examples per local step"),
    Field(
        "local.learning_rate",
        None,
        "local step size; None = 0.1, or the algorithm's (zeroth-order family)",
        float,
    ),
    Field("local.lr_decay", 0.998, "local updates scaled by lr_decay ** round"),
    Field(
        "local.momentum", None, "heavy-ball momentum, reset every round (0.9 for dfedavgm)", float
    ),
    Field("local.weight_decay", 0.0, "L2 weight decay added to the local gradient"),
    Field(
        "local.step_counts",
        "equal",
        "computation heterogeneity: equal (every step), fixed (client i always runs K_i "
        "steps of each phase, K_i drawn once), drawn (K_i drawn anew every round)",
    ),
    Field("local.min_steps", 1, "fixed and drawn: K_i uniform in [min_steps, local.steps]"),
    Field("sam.rho", None, "SAM radius; None = the algorithm's (0.05; 0.1 for fedspeed)", float),
    Field("sam.adaptive", False, "ASAM instead of SAM"),
    Field("server.clients_per_round", None, "m of N each round; None = 10% of N, at least 1", int),
    Field(
        "server.optimizer",
        "sgd",
        "server update of the mean client update: sgd, adam, yogi, adagrad",
    ),
    Field("server.learning_rate", 1.0, "server step size (1.0 with sgd = plain FedAvg)"),
    Field(
        "communication.topology",
        None,
        "decentralized algorithms (fedjax-lab list shows them); None = the algorithm's (ring; "
        "random_out_neighbours for dfedpgp)",
        str,
    ),
    Field(
        "communication.gossip_steps", None, "Q; None = the algorithm's (1; 4 for dfedsam_mgs)", int
    ),
    Field(
        "communication.order",
        None,
        "train_then_gossip or gossip_then_train; None = the algorithm's (gossip first for "
        "dfedalt, dfedsalt; the released DFedSAM code's order too)",
        str,
    ),
    Field(
        "communication.form",
        "auto",
        "dense, sparse, or auto (sparse below 10% nonzero, circulant if static)",
    ),
    Field(
        "communication.topology_p", None, "erdos_renyi edge probability; None = 3 ln(N) / N", float
    ),
    Field(
        "communication.topology_k",
        None,
        "random_in_neighbours in-degree, random_out_neighbours out-degree; None = min(10, N - 1)",
        int,
    ),
    Field(
        "execution.strategy",
        "auto",
        "auto (per backend, in the memory budget), vmap, chunked, sequential",
    ),
    Field("execution.chunk_size", None, "clients per chunk of the chunked strategy", int),
    Field(
        "execution.shard_clients",
        "auto",
        "split clients over devices: yes, no, auto (when they divide)",
    ),
    Field(
        "execution.memory_budget_gb",
        None,
        "for auto; None = 80% of the device (or host) memory",
        float,
    ),
    Field("execution.unroll", 1, "lax.scan unroll of the local steps"),
)

SECTIONS = ("data", "local", "sam", "server", "communication", "execution")
# Keys that may change between a run and its resumption: rounds may grow, to extend it.
RESUMABLE_KEYS = ("progress", "rounds")


def _set(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    *sections, leaf = key.split(".")
    for section in sections:
        if section not in config:
            config[section] = ml_collections.ConfigDict()
        config = config[section]
    config[leaf] = value


def _algorithm_fields(name: str) -> tuple[Field, ...]:
    return registry.spec(name).fields if name in registry.available_algorithms() else ()


def fields_of(config: ml_collections.ConfigDict) -> dict[str, Field]:
    """Every declared key of ``config`` (the base ones and its algorithm's), by dotted name."""
    return {f.key: f for f in FIELDS + _algorithm_fields(config.algorithm)}


def get_config(algorithm: str | None = None) -> ml_collections.ConfigDict:
    """The default configuration, for ``algorithm`` (default ``"dfedsam"``), unresolved."""
    config = ml_collections.ConfigDict()
    for f in FIELDS:
        _set(config, f.key, f.default)
    if algorithm is not None:
        config = with_algorithm(config, algorithm)
    return config


def with_algorithm(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """``config`` for algorithm ``name``: its own sections as they are when the algorithm
    does not change, else with their defaults; every other section of an algorithm's
    removed (each algorithm owns its sections: no value of one algorithm's leaks into
    another's)."""
    validation.check_name("algorithm", name, registry.available_algorithms())
    switched = name != config.get("algorithm")
    config = copy(config)
    config.algorithm = name
    shared = {f.section for f in FIELDS}
    fields = _algorithm_fields(name)
    for section in [k for k in config if isinstance(config[k], ml_collections.ConfigDict)]:
        if section not in shared and (switched or section not in {f.section for f in fields}):
            del config[section]
    for f in fields:
        if _lookup(config, f.key, missing=True):
            _set(config, f.key, f.default)
    return config


def _lookup(config: ml_collections.ConfigDict, key: str, missing: bool = False) -> Any:
    """``config[a][b]`` for ``"a.b"``; with ``missing=True``, whether it is absent."""
    node = config
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return True if missing else None
        node = node[part]
    return False if missing else node


def flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, (dict, ml_collections.ConfigDict)):
            flat.update(flatten(dict(value), f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A deep copy that accepts any type at keys that hold None (ml_collections would fix it)."""
    fresh = ml_collections.ConfigDict()
    for key, value in flatten(config.to_dict()).items():
        _set(fresh, key, value)
    return fresh


def check_key(config: ml_collections.ConfigDict, key: str) -> Field:
    """The field of dotted ``key``; a ValueError naming the closest keys if it is unknown."""
    known = fields_of(config)
    if key not in known:
        suffix = [k for k in known if k.split(".")[-1] == key.split(".")[-1]]
        error = validation.unknown_name_error("config key", key, known, show=0)
        if suffix and "Did you mean" not in str(error):
            error = ValueError(f"{error} Did you mean {', '.join(map(repr, suffix))}?")
        raise error
    return known[key]


def _check_type(field: Field, value: Any) -> Any:
    kind = field.kind
    if value is None and field.default is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(
            f"Expected a value of type {kind.__name__} for {field.key!r}, got {value!r}."
        )
    return value


def update(
    config: ml_collections.ConfigDict, values: dict | None = None, **kwargs
) -> ml_collections.ConfigDict:
    """A copy of ``config`` with typed values set; keys may be dotted or nested dicts.

    ``update(c, num_clients=10, local={"steps": 2})`` and
    ``update(c, {"local.steps": 2})`` set the same keys. Setting ``algorithm`` adds that
    algorithm's section first, so its keys can be set in the same call.
    """
    flat = flatten({**(values or {}), **kwargs})
    config = copy(config)
    if "algorithm" in flat:
        config = with_algorithm(config, flat.pop("algorithm"))
    for key, value in flat.items():
        field = check_key(config, key)
        _set(config, key, _check_type(field, value))
    return config


def from_dict(values: dict) -> ml_collections.ConfigDict:
    """The default config updated with ``values`` (such as a run's ``config.json``).

    Every key must be a known one; keys left out (added after the run was made, say) keep
    their defaults.
    """
    values = dict(values)
    algorithm = values.pop("algorithm", FIELDS[0].default)
    return update(get_config(algorithm), values)


def load_python_file(path: str | os.PathLike, missing: str) -> Any:
    """The Python file at ``path`` (an ``experiments/`` file) run as a module;
    FileNotFoundError with the message ``missing`` when there is none."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(missing)
    spec = importlib.util.spec_from_file_location(f"_fedjax_lab_file_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """The ``get_config()`` of a Python config file (such as ``experiments/*.py``)."""
    path = pathlib.Path(path)
    module = load_python_file(path, f"No config file at {path}.")
    if not hasattr(module, "get_config"):
        raise ValueError(f"The config file {path} defines no get_config() function.")
    return from_dict(module.get_config().to_dict())


def _parse(field: Field, text: str) -> Any:
    kind, key = field.kind, field.key
    if field.default is None and text.strip().lower() == "none":
        return None
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"Expected a boolean for {key!r}, got {text!r}.")
    if kind in (int, float):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (kind is int and not isinstance(value, int))
        ):
            raise ValueError(f"Expected a value of type {kind.__name__} for {key!r}, got {text!r}.")
        return kind(value)
    return text


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Iterable[str]
) -> ml_collections.ConfigDict:
    """Returns a copy of ``config`` with dotted ``key=value`` overrides applied."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"Expected an override of the form key=value, got {item!r}.")
        if key == "algorithm":
            config = with_algorithm(config, text.strip())
            continue
        config = update(config, {key: _parse(check_key(config, key), text)})
    return config


def default_clients_per_round(num_clients: int) -> int:
    """10% of the clients, at least one: the seed papers' participation."""
    return max(1, num_clients // 10)


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config`` with every dependent default filled in: what a run really uses.

    Fills the dataset's default partition, the algorithm's defaults of shared keys (its
    gossip steps and momentum), ``server.clients_per_round`` (10% of N) and the defaults
    of the chosen topology's parameters. Explicit values are kept; resolving twice changes
    nothing.
    """
    from fedjax_lab import data  # the data and topology modules are imported when needed
    from fedjax_lab import topology

    c = with_algorithm(config, config.algorithm)
    spec = registry.spec(c.algorithm)
    filled: dict[str, Any] = {
        "dataset": "digits",
        "model": "mlp",
        "local.learning_rate": 0.1,
        "local.momentum": 0.0,
        "sam.rho": 0.05,
        "communication.gossip_steps": 1,
        "communication.order": "train_then_gossip",
        "communication.topology": "ring",
    }
    filled.update(spec.defaults)
    filled["data.partition"] = data.default_partition(c.dataset or filled["dataset"])
    if (c.dataset or filled["dataset"]) == "mnist1d":
        filled["data.mnist1d_generation"] = _mnist1d_generation(c)
    filled["server.clients_per_round"] = default_clients_per_round(c.num_clients)
    graph = c.communication.topology or filled["communication.topology"]
    if graph == "erdos_renyi":
        filled["communication.topology_p"] = topology.default_erdos_renyi_p(c.num_clients)
    if graph in ("random_in_neighbours", "random_out_neighbours"):
        filled["communication.topology_k"] = min(10, max(c.num_clients - 1, 1))
    return update(c, {k: v for k, v in filled.items() if _lookup(c, k) is None})


def _mnist1d_generation(c: ml_collections.ConfigDict) -> str:
    """The JSON of mnist1d's generation arguments; a value already there must equal it."""
    from fedjax_lab.data import mnist1d

    made = json.dumps(mnist1d.generation_args(c.data.mnist1d_samples, c.data.seed), sort_keys=True)
    if c.data.mnist1d_generation not in (None, made):
        raise ValueError(
            f"data.mnist1d_generation is recorded, not set: it follows from "
            f"data.mnist1d_samples, data.seed and the mnist1d package ({made}), got "
            f"{c.data.mnist1d_generation!r}."
        )
    return made


def defaults_for(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The resolved default config of ``config``'s algorithm, with ``config``'s top-level keys
    and ``data`` section (the values the other defaults depend on)."""
    flat = flatten(config.to_dict())
    kept = {k: v for k, v in flat.items() if "." not in k or k.startswith("data.")}
    return resolve(update(get_config(config.algorithm), kept))


def describe(config: ml_collections.ConfigDict) -> str:
    """The config as commented ``key = value`` lines: top-level keys, then each section."""
    known = fields_of(config)
    flat = flatten(config.to_dict())
    heads = [None, *SECTIONS] + sorted({k.split(".")[0] for k in flat if "." in k} - set(SECTIONS))
    lines = []
    for head in heads:
        keys = [k for k in flat if (k.split(".")[0] if "." in k else None) == head]
        if not keys:
            continue
        if head is not None:
            lines.append(f"\n[{head}]")
        for key in keys:
            name = key.split(".", 1)[1] if head else key
            note = f"  # {known[key].help}" if key in known else ""
            lines.append(f"{name} = {flat[key]!r}{note}")
    return "\n".join(lines).strip() + "\n"
