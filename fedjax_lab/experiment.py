"""From a config to a finished run: data, model, algorithm, the round loop and its records.

:func:`run` is what ``fedjax-lab run`` calls, and what a notebook can call directly. A
workdir receives

* ``config.json``: the full resolved config, written before the first round;
* ``metrics.jsonl``: one JSON object per evaluated round (``round``, ``test_accuracy``,
  ``averaged_model_accuracy``, ``train_loss``, ``consensus_distance``,
  ``bytes_communicated`` so far), appended and flushed as the run goes;
* ``summary.json``: the final metrics and a sha256 fingerprint of the final parameters,
  written atomically at the end.

Randomness: round ``t`` uses ``fold_in(root, t)`` where ``root`` comes from ``config.seed``;
the data partition uses ``config.data_seed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from fedjax_lab import data as data_lib
from fedjax_lab import gossip as gossip_lib
from fedjax_lab import metrics as metrics_lib
from fedjax_lab import models
from fedjax_lab import objectives
from fedjax_lab import topology as topology_lib
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import registry

DATA_STREAM = 2  # beside base.COHORT_STREAM and base.TRAIN_STREAM
INIT_STREAM = 3
GOSSIP_MODES = ("auto", "dense", "sparse")
_RUN_FILES = ("metrics.jsonl", "summary.json")


def params_fingerprint(tree: Any) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes, in tree order."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        leaf = np.asarray(leaf)
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{leaf.dtype}{leaf.shape}".encode())
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def _check_config(c: ml_collections.ConfigDict) -> None:
    positive = ("num_clients", "rounds", "local_steps", "batch_size", "eval_every")
    for key in positive:
        if c[key] < 1:
            raise ValueError(f"Expected config.{key} >= 1, got {c[key]!r}.")
    if not c.learning_rate > 0:
        raise ValueError(f"Expected config.learning_rate > 0, got {c.learning_rate!r}.")
    if c.gossip not in GOSSIP_MODES:
        raise ValueError(f"Unknown config.gossip {c.gossip!r}; expected one of {GOSSIP_MODES}.")
    if c.chunk_size < 0 or c.gossip_steps < 0 or c.topology_k < 0 or c.topology_p < 0:
        raise ValueError(
            "Expected chunk_size, gossip_steps, topology_k and topology_p >= 0 "
            "(0 selects the default), got "
            f"{c.chunk_size}, {c.gossip_steps}, {c.topology_k}, {c.topology_p}."
        )


class _Mixing:
    """The mixing matrix of each round, in the configured dense or sparse form."""

    def __init__(self, c: ml_collections.ConfigDict):
        self.topology = topology_lib.make_topology(
            c.topology,
            c.num_clients,
            seed=c.data_seed,
            p=c.topology_p or None,
            k=c.topology_k or None,
        )
        first = self.topology.matrix(0)
        sparse = {"dense": False, "sparse": True, "auto": gossip_lib.is_sparse_worthwhile(first)}[
            c.gossip
        ]
        self._max_degree = int(np.max(np.sum(first != 0, axis=1))) if sparse else None
        self._static = None if self.topology.time_varying else self._convert(first)

    def _convert(self, w: np.ndarray) -> Any:
        if self._max_degree is None:
            return jnp.asarray(w)
        return gossip_lib.to_sparse(w, max_degree=self._max_degree)

    def __call__(self, round_index: int) -> Any:
        if self._static is not None:
            return self._static
        return self._convert(self.topology.matrix(round_index))


def _prepare_workdir(workdir: str | os.PathLike, overwrite: bool) -> pathlib.Path:
    path = pathlib.Path(workdir)
    existing = [name for name in _RUN_FILES if (path / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{path} already holds a run ({', '.join(existing)}); choose another workdir "
            "or pass overwrite=True (--overwrite)."
        )
    path.mkdir(parents=True, exist_ok=True)
    for name in existing:
        (path / name).unlink()
    return path


def _write_json_atomic(path: pathlib.Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def run(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, overwrite: bool = False
) -> dict[str, Any]:
    """Runs the experiment described by ``config`` and records it in ``workdir``.

    Returns:
      The summary (also written to ``summary.json``): the final evaluation metrics,
      ``bytes_communicated``, ``rounds``, ``wall_time_s`` and ``params_sha256``.
    """
    c = config
    _check_config(c)
    dataset = data_lib.make_federated_dataset(
        c.dataset,
        c.num_clients,
        seed=c.data_seed,
        partition=c.partition or None,
        alpha=c.alpha,
        classes_per_client=c.classes_per_client,
        test_examples_per_client=c.test_examples_per_client,
        synthetic_alpha=c.synthetic_alpha,
        synthetic_beta=c.synthetic_beta,
    )
    model = models.make_model(c.model, dataset.num_classes)
    apply_fn = lambda params, x: model.apply({"params": params}, x)
    algorithm = registry.build_algorithm(c, objectives.cross_entropy_loss(apply_fn))
    mixing = _Mixing(c) if algorithm.decentralized else (lambda round_index: None)

    root = jax.random.key(c.seed)
    params = models.init_params(model, dataset.input_shape, jax.random.fold_in(root, INIT_STREAM))
    model_bytes = base.model_bytes(params)
    state = algorithm.init(params)

    @jax.jit
    def train_round(state, mixing, train_data, round_index):
        key = jax.random.fold_in(root, round_index)
        batches = data_lib.sample_batches(
            train_data,
            algorithm.cohort(key),
            jax.random.fold_in(key, DATA_STREAM),
            c.local_steps,
            c.batch_size,
        )
        return algorithm.round(state, mixing, batches, key)

    @jax.jit
    def evaluate(state, test_data):
        return metrics_lib.evaluate(
            apply_fn,
            algorithm.client_params(state),
            test_data,
            strategy=c.strategy,
            chunk_size=c.chunk_size or None,
        )

    path = _prepare_workdir(workdir, overwrite)
    _write_json_atomic(path / "config.json", c.to_dict())
    bytes_sent = 0
    record: dict[str, Any] = {}
    start = time.perf_counter()
    bar = tqdm.trange(
        c.rounds, desc=f"{c.algorithm} on {c.dataset}", unit="round", disable=not c.progress
    )
    with open(path / "metrics.jsonl", "a") as log:
        for t in bar:
            state, round_metrics = train_round(state, mixing(t), dataset.train, jnp.int32(t))
            bytes_sent += int(round_metrics["models_sent"]) * model_bytes
            if (t + 1) % c.eval_every == 0 or t + 1 == c.rounds:
                evaluated = jax.device_get(evaluate(state, dataset.test))
                train_loss = float(round_metrics["train_loss"])
                if not np.isfinite(train_loss):
                    raise FloatingPointError(f"Training loss became {train_loss} in round {t + 1}.")
                record = {
                    "round": t + 1,
                    "train_loss": train_loss,
                    "bytes_communicated": bytes_sent,
                    **{k: float(v) for k, v in evaluated.items()},
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(acc=f"{record['test_accuracy']:.3f}", loss=f"{train_loss:.3f}")
    summary = {
        **record,
        "rounds": c.rounds,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "params_sha256": params_fingerprint(state.params),
    }
    _write_json_atomic(path / "summary.json", summary)
    return summary
