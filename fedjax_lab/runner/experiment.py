"""From a config to a finished run: data, model, algorithm, the round loop and its records.

:func:`run` is what ``fedjax-lab run`` calls, and what a notebook can call directly. A
workdir receives

* ``config.json``: the full resolved config, written before the first round;
* ``metrics.jsonl``: one JSON object per evaluated round (``round``, ``test_accuracy``,
  ``averaged_model_accuracy``, ``consensus_distance``, ``bytes_communicated`` so far, and
  every metric the algorithm's round returns, ``train_loss`` and ``models_sent`` among
  them, plus those of its host hook), appended and flushed as the run goes;
* ``tensorboard/``: the same metrics as TensorBoard event files;
* ``checkpoints/<round>``: the whole experiment state (algorithm state with every per-client
  state, root PRNG key, bytes communicated, the host hook's state) and its fingerprint,
  every ``checkpoint_every`` rounds, at the end and when a signal stops the run; the newest
  ``keep_checkpoints`` kept (:mod:`fedjax_lab.runner.checkpoints`); damaged ones found on resume
  are moved to ``checkpoints_skipped/``;
* ``summary.json``: the final metrics and a sha256 fingerprint of the final parameters,
  written atomically at the end; ``stopped`` gives the reason when the algorithm's host
  hook ended the run early (a privacy budget reached: ``dp.target_epsilon``);
* ``lock``: held while a run is active, with its pid and host (:mod:`fedjax_lab.runner.locking`).

Randomness: round ``t`` uses ``fold_in(root, t)`` where ``root`` comes from ``config.seed``;
batch sampling, client sampling, local training and privacy noise are its streams
(:mod:`fedjax_lab.randomness`); the data partition uses ``config.data.seed``. A run
resumed from a checkpoint therefore continues exactly as the uninterrupted run would have,
and ends with the same parameter fingerprint; schedules depend on the round index only, so
a finished run extended to more rounds ends as a run of that length from the start would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from fedjax_lab import clients
from fedjax_lab import data as data_lib
from fedjax_lab import gossip as gossip_lib
from fedjax_lab import metrics as metrics_lib
from fedjax_lab import models
from fedjax_lab import objectives
from fedjax_lab import randomness
from fedjax_lab import sharding
from fedjax_lab import topology as topology_lib
from fedjax_lab import specs
from fedjax_lab.algorithms import base
from fedjax_lab.specs import config as config_lib
from fedjax_lab.runner import checkpoints
from fedjax_lab.runner import execution
from fedjax_lab.runner import fingerprints
from fedjax_lab.runner import locking
from fedjax_lab.runner import records
from fedjax_lab.runner import stopping

GOSSIP_MODES = ("auto", "dense", "sparse")
SHARD_MODES = ("auto", "yes", "no")


def _check_config(c: ml_collections.ConfigDict) -> None:
    positive = {
        "num_clients": c.num_clients,
        "rounds": c.rounds,
        "eval_every": c.eval_every,
        "keep_checkpoints": c.keep_checkpoints,
        "local.steps": c.local.steps,
        "local.batch_size": c.local.batch_size,
        "communication.gossip_steps": c.communication.gossip_steps,
        "server.clients_per_round": c.server.clients_per_round,
    }
    for key, value in positive.items():
        if value < 1:
            raise ValueError(f"Expected config.{key} >= 1, got {value!r}.")
    if c.server.clients_per_round > c.num_clients:
        raise ValueError(
            f"Expected config.server.clients_per_round <= num_clients={c.num_clients}, got "
            f"{c.server.clients_per_round}."
        )
    if not c.local.learning_rate > 0:
        raise ValueError(f"Expected config.local.learning_rate > 0, got {c.local.learning_rate!r}.")
    if c.execution.strategy != "auto":
        clients.validate_strategy(c.execution.strategy, c.execution.chunk_size)
    if c.execution.shard_clients not in SHARD_MODES:
        raise ValueError(
            f"Unknown config.execution.shard_clients {c.execution.shard_clients!r}; expected one "
            f"of {SHARD_MODES}."
        )
    budget = c.execution.memory_budget_gb
    if budget is not None and not budget > 0:
        raise ValueError(
            f"Expected config.execution.memory_budget_gb > 0 (None = 80% of the device), "
            f"got {budget}."
        )
    if c.communication.form not in GOSSIP_MODES:
        raise ValueError(
            f"Unknown config.communication.form {c.communication.form!r}; expected one of "
            f"{GOSSIP_MODES}."
        )
    if c.checkpoint_every < 0:
        raise ValueError(
            f"Expected config.checkpoint_every >= 0 (0 = no checkpoints), got {c.checkpoint_every}."
        )


class _Mixing:
    """The mixing matrix of each round, in the configured dense or sparse form."""

    def __init__(self, c: ml_collections.ConfigDict):
        comm = c.communication
        self.topology = topology_lib.make_topology(
            comm.topology, c.num_clients, seed=c.data.seed, p=comm.topology_p, k=comm.topology_k
        )
        first = self.topology.matrix(0)
        sparse = {"dense": False, "sparse": True, "auto": gossip_lib.is_sparse_worthwhile(first)}[
            comm.form
        ]
        self._max_degree = int(np.max(np.sum(first != 0, axis=1))) if sparse else None
        self._static = None
        if not self.topology.time_varying:
            # "auto" prefers the circulant form where it applies: same result, and with
            # clients split over devices a shift moves only the boundary clients.
            circulant = gossip_lib.to_circulant(first) if comm.form == "auto" and sparse else None
            self._static = circulant or self._convert(first)

    def _convert(self, w: np.ndarray) -> Any:
        if self._max_degree is None:
            return jnp.asarray(w)
        return gossip_lib.to_sparse(w, max_degree=self._max_degree)

    def __call__(self, round_index: int) -> Any:
        if self._static is not None:
            return self._static
        return self._convert(self.topology.matrix(round_index))


_RUN_ENTRIES = (
    "config.json",
    "metrics.jsonl",
    "summary.json",
    "checkpoints",
    "checkpoints_skipped",
    "tensorboard",
)


def _config_differences(stored: dict, given: dict) -> list[str]:
    """Keys of a stored run's config whose value differs in ``given`` (dotted).

    Keys absent from the stored config (added to the library after the run was made) take
    their defaults and are not differences.
    """
    stored, given = config_lib.flatten(stored), config_lib.flatten(given)
    return sorted(
        f"{k}: stored {stored[k]!r}, given {given.get(k)!r}"
        for k in stored
        if k not in config_lib.RESUMABLE_KEYS and stored[k] != given.get(k)
    )


def _prepare_workdir(
    workdir: str | os.PathLike, config: ml_collections.ConfigDict, resume: bool, overwrite: bool
) -> pathlib.Path:
    if resume and overwrite:
        raise ValueError("Pass either resume or overwrite, not both.")
    path = pathlib.Path(workdir)
    existing = [name for name in _RUN_ENTRIES if (path / name).exists()]
    if resume:
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"Nothing to resume: {path} holds no config.json.")
        differ = _config_differences(
            json.loads((path / "config.json").read_text()), config.to_dict()
        )
        if differ:
            raise ValueError(
                f"The config differs from the run in {path} ({', '.join(differ)}); resume it "
                "with the stored config or start a new run elsewhere."
            )
    elif existing and not overwrite:
        raise FileExistsError(
            f"{path} already holds a run ({', '.join(existing)}); resume it, choose another "
            "workdir, or overwrite it (--resume, --workdir, --overwrite)."
        )
    # Every process has checked the workdir before the first one changes it.
    _sync_processes("fedjax_lab:workdir_checked")
    if jax.process_index() == 0:
        if not resume:
            for name in existing:
                entry = path / name
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            path.mkdir(parents=True, exist_ok=True)
        # On resume this completes a config.json that predates newer keys.
        _write_json_atomic(path / "config.json", config.to_dict())
    _sync_processes("fedjax_lab:workdir_ready")
    return path


def _sync_processes(name: str) -> None:
    """Waits for every process of a multi-process run to get here (no-op with one)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _host_value(x: Any) -> np.ndarray:
    """A replicated result as NumPy, also when its devices span several processes."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def _host_scalars(metrics: dict[str, Any]) -> dict[str, float | int]:
    """A round's metrics as Python numbers (ints stay ints)."""
    out = {}
    for key, value in metrics.items():
        value = _host_value(value)
        out[key] = int(value) if np.issubdtype(value.dtype, np.integer) else float(value)
    return out


def _write_json_atomic(path: pathlib.Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _checkpoint_tree(state: Any, root: jax.Array, bytes_sent: int, host: Any) -> dict[str, Any]:
    return {
        "state": state,
        "rng": np.asarray(jax.random.key_data(root)),
        "bytes_communicated": np.asarray(bytes_sent, np.int64),
        "host": host,
    }


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything a run is built from, ready to step by hand (in a notebook, say).

    Attributes:
      config: the resolved config it was built from.
      dataset: the federated dataset (train and per-client test arrays).
      model: the flax module; ``apply_fn(params, x)`` gives logits.
      algorithm: the federated algorithm.
      topology: the topology of a decentralized algorithm, else None.
      execution: how clients are executed (``config.execution.strategy``, or what "auto" chose).
      root: the root PRNG key (from ``config.seed``); round t uses ``fold_in(root, t)``.
      initial_state: the algorithm state before the first round.
      message_bytes: bytes of one message of each counted kind (``Algorithm.message_bytes``).
    """

    config: ml_collections.ConfigDict
    dataset: data_lib.FederatedDataset
    model: Any
    algorithm: base.Algorithm
    topology: topology_lib.Topology | None
    execution: execution.ExecutionPlan
    root: jax.Array
    initial_state: Any
    message_bytes: dict[str, int]
    _mixing: Any
    _train_round: Any
    _evaluate: Any

    def apply_fn(self, params: Any, x: jax.Array) -> jax.Array:
        return self.model.apply({"params": params}, x)

    def train_round(self, state: Any, round_index: int) -> tuple[Any, dict[str, jax.Array]]:
        """Round ``round_index`` (0-based): batches sampled on device, then the algorithm."""
        return self._train_round(
            state, self._mixing(round_index), self.dataset.train, jnp.int32(round_index)
        )

    def evaluate(self, state: Any) -> dict[str, float]:
        """Mean per-client test accuracy, averaged-model accuracy, consensus distance."""
        results = self._evaluate(state, self.dataset.test)
        return {k: float(_host_value(v)) for k, v in results.items()}

    def bytes_sent(self, round_metrics: dict[str, float | int]) -> int:
        """The bytes one round sent: its message counts times the bytes of each message."""
        return sum(int(round_metrics[k]) * size for k, size in self.message_bytes.items())


def _client_mesh(c: ml_collections.ConfigDict, cohort_size: int) -> jax.sharding.Mesh | None:
    """The mesh to split the clients over, or None (``config.execution.shard_clients``)."""
    mode = c.execution.shard_clients
    if mode == "no":
        return None
    devices = jax.device_count()
    if mode == "auto" and (devices == 1 or c.num_clients % devices or cohort_size % devices):
        return None
    return sharding.client_mesh()


def _dataset(c: ml_collections.ConfigDict) -> data_lib.FederatedDataset:
    d = c.data
    return data_lib.make_federated_dataset(
        c.dataset,
        c.num_clients,
        seed=d.seed,
        partition=d.partition,
        alpha=d.alpha,
        classes_per_client=d.classes_per_client,
        test_examples_per_client=d.test_examples_per_client,
        synthetic_alpha=d.synthetic_alpha,
        synthetic_beta=d.synthetic_beta,
        data_dir=d.data_dir,
        mnist1d_samples=d.mnist1d_samples,
    )


class _Placement:
    """Where the run's arrays live: split over a client mesh, or on one device. The
    algorithm's state is split where the algorithm declares a client axis."""

    def __init__(self, mesh: jax.sharding.Mesh | None, algorithm: base.Algorithm):
        self.mesh, self.algorithm = mesh, algorithm
        self.devices = mesh.size if mesh is not None else 1

    def execution(self, strategy: str, chunk_size: int | None, unroll: int | bool = 1):
        """How the clients are mapped: with the mesh, each device maps its own (shard_map)."""
        return clients.Execution(strategy, chunk_size, unroll, mesh=self.mesh)

    def place(self, dataset: data_lib.FederatedDataset, state: Any):
        if self.mesh is None:
            return dataset, state
        dataset = dataset._replace(
            train=sharding.shard_clients(dataset.train, self.mesh),
            test=sharding.shard_clients(dataset.test, self.mesh),
        )
        layout = sharding.state_shardings(self.algorithm, state, self.mesh)
        return dataset, sharding.place(state, layout)

    def jit_kwargs(self, state: Any, train: Any) -> dict[str, Any]:
        if self.mesh is None:
            return {}
        layout = sharding.state_shardings(self.algorithm, state, self.mesh)
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        return dict(
            in_shardings=(
                layout,
                replicated,
                sharding.client_shardings(train, self.mesh),
                replicated,
            ),
            out_shardings=(layout, replicated),
        )


def _round_with_batches(
    c: ml_collections.ConfigDict,
    algorithm: base.Algorithm,
    root: jax.Array,
    placement: _Placement,
    how: clients.Execution,
):
    """The jittable ``(state, mixing, train_data, round) -> (state, metrics)`` of a run:
    the round's batches sampled on device, then the algorithm's round, its clients mapped
    as ``how`` says."""
    everyone = algorithm.decentralized  # every client, in id order
    steps = algorithm.local_steps or c.local.steps

    def train_round(state, mixing, train_data, round_index):
        key = jax.random.fold_in(root, round_index)
        batches = data_lib.sample_batches(
            train_data,
            None if everyone else algorithm.cohort(key),
            randomness.stream(key, randomness.Stream.DATA),
            steps,
            c.local.batch_size,
        )
        if placement.mesh is not None:
            batches = sharding.constrain(batches, placement.mesh, algorithm.cohort_size)
        return algorithm.round(state, mixing, batches, key, execution=how)

    return train_round


def _compile_round(c, algorithm, args, root, placement, params, jit_kwargs):
    """The compiled round and its execution plan (``config.execution``): the one algorithm,
    its clients mapped with the configured strategy, or the one "auto" picks."""
    round_for = lambda strategy, chunk: _round_with_batches(
        c, algorithm, root, placement, placement.execution(strategy, chunk, c.execution.unroll)
    )
    if c.execution.strategy != "auto":
        plan = execution.ExecutionPlan(c.execution.strategy, c.execution.chunk_size)
        compiled = (
            jax.jit(round_for(plan.strategy, plan.chunk_size), **jit_kwargs).lower(*args).compile()
        )
        return compiled, plan
    budget_gb = c.execution.memory_budget_gb
    budget = int(budget_gb * 2**30) if budget_gb else execution.default_memory_budget()
    if jax.default_backend() == "cpu":
        budget //= placement.devices  # CPU devices share the host's memory
    per_device = algorithm.cohort_size // placement.devices
    return execution.compile_round(
        round_for,
        args,
        per_device,
        budget,
        chunk=execution.preferred_chunk(jax.default_backend(), per_device, params),
        jit_kwargs=jit_kwargs,
    )


def _model(c: ml_collections.ConfigDict, dataset: data_lib.FederatedDataset, key: jax.Array):
    """The run's flax module and initial parameters: ``config.model`` from its
    initialization, or the algorithm's pre-trained model (``config.model = "pretrained"``)."""
    if c.model != specs.registry.PRETRAINED:
        model = models.make_model(c.model, dataset.num_classes)
        return model, models.init_params(model, dataset.input_shape, key)
    spec = specs.spec(c.algorithm)
    if spec.model is None:
        tuners = [n for n in specs.available_algorithms() if specs.spec(n).model]
        raise ValueError(
            f"config.model='pretrained' tunes a pre-trained model, which {c.algorithm} does not "
            f"do; expected a model of {models.available_models()}, or one of the algorithms "
            f"{tuners}."
        )
    return spec.model(c, dataset.num_classes, dataset.input_shape, key)


def build(config: ml_collections.ConfigDict) -> Experiment:
    """Builds the data, model, algorithm and jitted round of ``config`` (no files written).

    The config is resolved first, once (:func:`fedjax_lab.specs.config.resolve`), and the
    algorithm built once; how its clients run (``config.execution``) is handed to its round.
    """
    c = config_lib.resolve(config)
    _check_config(c)
    dataset = _dataset(c)
    root = jax.random.key(c.seed)
    init_key = randomness.stream(root, randomness.Stream.INIT)
    model, params = _model(c, dataset, init_key)
    apply_fn = lambda params, x: model.apply({"params": params}, x)
    loss_fn = objectives.cross_entropy_loss(apply_fn)

    algorithm = specs.registry.build_resolved(c, loss_fn)
    mixing = _Mixing(c) if algorithm.decentralized else None
    if mixing is not None:
        topology_lib.check_stochastic(mixing.topology, algorithm.exchange.mixing, algorithm.name)
    mixing_at = mixing if mixing else (lambda round_index: None)
    placement = _Placement(_client_mesh(c, algorithm.cohort_size), algorithm)
    dataset, initial_state = placement.place(dataset, algorithm.init(params))
    jit_kwargs = placement.jit_kwargs(initial_state, dataset.train)
    round_args = (initial_state, mixing_at(0), dataset.train, jnp.int32(0))
    train_round, plan = _compile_round(
        c, algorithm, round_args, root, placement, params, jit_kwargs
    )
    plan = plan._replace(devices=placement.devices)
    evaluate = (
        jax.jit(
            lambda state, test_data: metrics_lib.evaluate(
                apply_fn,
                algorithm.client_params(state),
                test_data,
                execution=placement.execution(plan.strategy, plan.chunk_size),
                labels=algorithm.exchange.labels,
            )
        )
        .lower(initial_state, dataset.test)
        .compile()
    )

    return Experiment(
        config=c,
        dataset=dataset,
        model=model,
        algorithm=algorithm,
        topology=mixing.topology if mixing else None,
        execution=plan,
        root=root,
        initial_state=initial_state,
        message_bytes=algorithm.message_bytes(params),
        _mixing=mixing_at,
        _train_round=train_round,
        _evaluate=evaluate,
    )


def run(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Runs the experiment described by ``config`` and records it in ``workdir``.

    Args:
      config: the config (:func:`fedjax_lab.specs.config.get_config` and overrides); it is
        resolved first, and ``config.json`` records the resolved values.
      workdir: the run directory, locked while the run is active
        (:mod:`fedjax_lab.runner.locking`). A workdir that already holds a run is refused unless
        ``resume`` (continue from its newest intact checkpoint; the config must equal the
        stored one, except ``rounds``, which may grow to extend a finished run) or
        ``overwrite`` (delete the old run's records first).

    Returns:
      The summary (also written to ``summary.json``): the final evaluation metrics, the last
      round's metrics (``train_loss``, message counts, whatever the algorithm reports),
      ``bytes_communicated``, ``rounds``, ``resumed_from`` (0 for a fresh run),
      ``wall_time_s`` of this invocation, ``params_sha256`` (of ``client_params``), and how
      the clients ran: ``devices`` they were split over, ``strategy`` and ``chunk_size`` on
      each device.

    Raises:
      FloatingPointError: when the training loss becomes NaN or infinite; the message names
        the round, and the checkpoints saved before it stay usable.
      fedjax_lab.runner.locking.WorkdirBusy: another live process holds the workdir.
      fedjax_lab.runner.checkpoints.NoIntactCheckpoint: resuming, and no checkpoint is intact.
      fedjax_lab.runner.stopping.RunInterrupted: SIGTERM or SIGINT stopped the run after saving a
        checkpoint of its last completed round (see :mod:`fedjax_lab.runner.stopping`).
    """
    exp = build(config)
    primary = jax.process_index() == 0  # the process that writes records and holds the lock
    lock = locking.WorkdirLock(workdir) if primary else contextlib.nullcontext()
    with lock, stopping.GracefulStop() as stop:
        path = _prepare_workdir(workdir, exp.config, resume=resume, overwrite=overwrite)
        return _run_in(exp, path, resume, stop)


def _stopped_message(signum: int, done: int, c: ml_collections.ConfigDict, path) -> str:
    how = (
        f"its checkpoint is saved; resume with: fedjax-lab run --workdir {path} --resume"
        if c.checkpoint_every
        else "checkpoints are off (checkpoint_every=0), so it cannot be resumed"
    )
    return f"{signal.Signals(signum).name}: stopped after round {done} of {c.rounds}; {how}"


def _run_in(
    exp: Experiment, path: pathlib.Path, resume: bool, stop: stopping.GracefulStop
) -> dict[str, Any]:
    """The round loop of :func:`run` in a prepared, locked workdir."""
    c = exp.config
    primary = jax.process_index() == 0
    hook = exp.algorithm.host_hook
    state, root = exp.initial_state, exp.root
    host_state = hook.init() if hook else ()
    checkpointer = checkpoints.Checkpointer(path / "checkpoints", keep=c.keep_checkpoints)
    first_round, bytes_sent = 0, 0
    if resume:
        like = _checkpoint_tree(state, root, 0, host_state)
        latest, restored = checkpointer.restore_latest(like)
        if latest is not None:
            if not np.array_equal(restored["rng"], jax.random.key_data(root)):
                raise ValueError(f"The checkpoint of round {latest} was written with another seed.")
            if latest > c.rounds:
                raise ValueError(
                    f"The run in {path} has done {latest} rounds; to resume it, rounds must be "
                    f"at least {latest}, got {c.rounds}."
                )
            state, host_state = restored["state"], restored["host"]
            first_round, bytes_sent = latest, int(restored["bytes_communicated"])
    writer = (
        records.MetricsWriter(path, resume_round=first_round if resume else None)
        if primary
        else records.NullWriter()
    )
    record: dict[str, Any] = {}
    if c.progress and primary:
        plan = exp.execution
        where = f"split over {plan.devices} devices" if plan.devices > 1 else "on one device"
        how = f"chunks of {plan.chunk_size}" if plan.chunk_size else plan.strategy
        tqdm.tqdm.write(f"{c.num_clients} clients {where} ({jax.default_backend()}), {how}")
    start = time.perf_counter()
    bar = tqdm.tqdm(
        range(first_round, c.rounds),
        initial=first_round,
        total=c.rounds,
        desc=f"{c.algorithm} on {c.dataset}",
        unit="round",
        disable=not (c.progress and primary),
    )
    stopped, extra, last_saved = None, {}, None
    try:
        for t in bar:
            stopped = hook.stop_before(host_state, t + 1) if hook and hook.stop_before else None
            if stopped:
                if t > first_round and record.get("round") != t:
                    record = {**last_record, **exp.evaluate(state)}
                    writer.write(record)
                if t > first_round and c.checkpoint_every and last_saved != t:
                    checkpointer.save(t, _checkpoint_tree(state, root, bytes_sent, host_state))
                tqdm.tqdm.write(f"Stopped before round {t + 1} of {c.rounds}: {stopped}")
                break
            state, round_metrics = exp.train_round(state, t)
            round_metrics = _host_scalars(round_metrics)
            train_loss = round_metrics["train_loss"]
            if not np.isfinite(train_loss):
                checkpointer.wait()
                last = checkpointer.latest_round()
                raise FloatingPointError(
                    f"The training loss became {train_loss} in round {t + 1}; stopping. "
                    + (
                        f"The last good checkpoint is round {last} in {checkpointer.directory}."
                        if last is not None
                        else "No checkpoint was saved before it."
                    )
                )
            bytes_sent += exp.bytes_sent(round_metrics)
            done = t + 1
            if hook:
                host_state, extra = hook.after_round(host_state, done, round_metrics)
                round_metrics.update(extra)
            last_record = {"round": done, **round_metrics, "bytes_communicated": bytes_sent}
            if done % c.eval_every == 0 or done == c.rounds:
                record = {**last_record, **exp.evaluate(state)}
                writer.write(record)
                bar.set_postfix(
                    acc=f"{record['test_accuracy']:.3f}",
                    loss=f"{train_loss:.3f}",
                    **{k: f"{record[k]:.3g}" for k in extra},
                )
            saved = c.checkpoint_every and (done % c.checkpoint_every == 0 or done == c.rounds)
            signum = stop.requested()
            if saved or (signum and c.checkpoint_every):
                checkpointer.save(done, _checkpoint_tree(state, root, bytes_sent, host_state))
                last_saved = done
            if signum and done < c.rounds:
                raise stopping.RunInterrupted(_stopped_message(signum, done, c, path), signum)
    finally:
        bar.close()
        writer.close()
        checkpointer.close()
    if not record:  # resumed from the final checkpoint (or stopped at once): nothing ran
        record = records.load_metrics(path)[-1]
    summary = {
        **record,
        "rounds": c.rounds,
        **({"stopped": stopped} if stopped else {}),
        "resumed_from": first_round,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "params_sha256": fingerprints.params_fingerprint(
            sharding.to_host(exp.algorithm.client_params(state))
        ),
        "devices": exp.execution.devices,
        "strategy": exp.execution.strategy,
        "chunk_size": exp.execution.chunk_size,
    }
    if primary:
        _write_json_atomic(path / "summary.json", summary)
    return summary
