#!/usr/bin/env python3
"""One process of the sharding tests: sharded rounds against the same rounds on one device.

Launched by ``tests/test_sharding.py`` in a fresh interpreter, because the number of
host-platform devices (``--xla_force_host_platform_device_count``) must be fixed before JAX
is imported. Either a single process with ``--devices D`` local devices, or one of
``--num-processes`` processes joined through ``jax.distributed.initialize`` on a loopback
coordinator (gloo collectives), each with ``--devices`` local devices.

Every process builds the same small problem from fixed seeds (16 clients, an MLP, random
data, a ring topology), runs ``ROUNDS`` rounds of several cases sharded over the global
client mesh, and (unless ``--no-reference``), on its first local device alone, the same
rounds unsharded. It writes a JSON report: per case and mesh size, the sha256 fingerprint of
the gathered final parameters (:func:`fedjax_lab.runner.fingerprints.params_fingerprint`), how they
were laid out, and their largest absolute difference from the unsharded run; and, beside it
(``<out>.npz``), the final parameters themselves, for comparisons across workers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


CASES = (
    "dfedsam_dense",  # dense W: gossip is an einsum over the sharded client axis
    "dfedsam_sparse",  # SparseMixing: gossip gathers rows of other devices' clients
    "fedavg_m8",  # server mean over a cohort of 8: batches split over clients
    "fedavg_m6",  # cohort of 6, not divisible by 4 or 8 devices: batches replicated
    "dfedsam_dense_in_jit",  # experiment.build's shape: batches sampled inside the round
    "dfedpgp_sparse",  # push-sum over a directed graph: values and weights split over clients
)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the JSON report (the arrays go to .npz)")
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="skip the one-device runs (compare with another worker's instead)",
    )
    parser.add_argument("--devices", type=int, default=8, help="host-platform devices here")
    parser.add_argument("--coordinator", default="", help="127.0.0.1:PORT for multi-process")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument(
        "--cases",
        default="all",
        help="comma-separated case names (see CASES) or 'all'; a name may end in @S1+S2 to "
        "shard it over meshes of the first S1, then S2, global devices (default: all of them)",
    )
    return parser.parse_args()


def _requested_cases(spec: str) -> dict[str, list[int]]:
    """``name[@S1+S2],...`` -> {name: mesh sizes} (an empty list: all global devices)."""
    cases = {}
    for entry in CASES if spec == "all" else spec.split(","):
        name, _, sizes = entry.partition("@")
        if name not in CASES:
            sys.exit(f"Unknown case {name!r}; expected one of {CASES}.")
        cases[name] = [int(size) for size in sizes.split("+") if size]
    return cases


ARGS = _parse_args()
REQUESTED = _requested_cases(ARGS.cases)  # checked before JAX starts: a peer may wait on us
if not ARGS.coordinator.startswith("127.0.0.1:") and ARGS.num_processes > 1:
    sys.exit(f"Expected a loopback coordinator 127.0.0.1:PORT, got {ARGS.coordinator!r}.")
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={ARGS.devices}"]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # after XLA_FLAGS is set

if ARGS.num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=ARGS.coordinator,
        num_processes=ARGS.num_processes,
        process_id=ARGS.process_id,
        initialization_timeout=60,
    )

import jax.numpy as jnp
import numpy as np
import optax

from fedjax_lab import algorithms
from fedjax_lab import data
from fedjax_lab import gossip
from fedjax_lab import models
from fedjax_lab import objectives
from fedjax_lab import sharding
from fedjax_lab import topology
from fedjax_lab.algorithms import personalized
from fedjax_lab.randomness import Stream
from fedjax_lab.randomness import stream
from fedjax_lab.runner.fingerprints import params_fingerprint

NUM_CLIENTS = 16
ROUNDS = 3
LOCAL_STEPS = 2
BATCH_SIZE = 5
INPUT_DIM = 8
NUM_CLASSES = 4
ROOT_SEED = 7


def make_problem():
    """Data, loss and initial parameters, identical in every process (fixed seeds)."""
    rng = np.random.default_rng(0)
    counts = rng.integers(3, 12, size=NUM_CLIENTS)  # some clients below the batch size
    xs = [rng.normal(size=(int(c), INPUT_DIM)).astype(np.float32) for c in counts]
    ys = [rng.integers(0, NUM_CLASSES, size=int(c)).astype(np.int32) for c in counts]
    client_data = data.stack_clients(xs, ys)
    model = models.make_model("mlp", NUM_CLASSES, hidden_sizes=(16,))
    params = models.init_params(model, (INPUT_DIM,), jax.random.key(1))
    loss_fn = objectives.cross_entropy_loss(lambda p, x: model.apply({"params": p}, x))
    return client_data, loss_fn, params


def make_algorithms(loss_fn):
    """Algorithm name -> algorithm; the cases share them (and their compiled inputs)."""
    fedavg = lambda m: algorithms.fedavg(
        loss_fn, optax.sgd(0.1), num_clients=NUM_CLIENTS, clients_per_round=m
    )
    return {
        "dfedsam": algorithms.dfedsam(
            loss_fn, learning_rate=0.1, rho=0.05, num_clients=NUM_CLIENTS
        ),
        "fedavg_m8": fedavg(8),
        "fedavg_m6": fedavg(6),
        "dfedpgp": personalized.dfedpgp(
            loss_fn,
            optax.sgd(0.1),
            optax.sgd(0.1),
            num_clients=NUM_CLIENTS,
            head_steps=1,
            body_steps=LOCAL_STEPS - 1,
        ),
    }


def case_spec(name):
    """``(algorithm name, mixing kind)`` of case ``name``."""
    if name.startswith("dfedsam"):
        return "dfedsam", "sparse" if name.endswith("sparse") else "dense"
    if name == "dfedpgp_sparse":
        return "dfedpgp", "push_sparse"
    return name, None


def make_mixing(kind):
    if kind == "push_sparse":  # column stochastic, uneven row sums: the weights move
        out = topology.random_out_neighbours(NUM_CLIENTS, 3, seed=0).matrix(0)
        return gossip.to_sparse(out)
    ring = topology.ring(NUM_CLIENTS).matrix(0)
    return {None: None, "dense": jnp.asarray(ring), "sparse": gossip.to_sparse(ring)}[kind]


def sample_round(algorithm, client_data, t):
    """Round ``t``'s key and the batches of its cohort (traceable)."""
    key = jax.random.fold_in(jax.random.key(ROOT_SEED), t)
    batches = data.sample_batches(
        client_data,
        algorithm.cohort(key),
        stream(key, Stream.DATA),
        LOCAL_STEPS,
        BATCH_SIZE,
    )
    return key, batches


def round_inputs(algorithm):
    """Jitted ``(client_data, t) -> (key, batches)`` of round ``t`` (on one device)."""
    return jax.jit(lambda client_data, t: sample_round(algorithm, client_data, t))


def run_rounds(round_fn, inputs, state, mixing, client_data):
    """ROUNDS rounds of ``round_fn``; returns the final state and last metrics."""
    for t in range(ROUNDS):
        key, batches = inputs(client_data, t)
        state, metrics = round_fn(state, mixing, batches, key)
    return state, metrics


def in_jit_round(algorithm, mesh, params, client_data):
    """A round like ``experiment.build``'s: sample the batches inside, then train.

    With a mesh: state and client data split over clients, everything else replicated,
    and the sampled batches constrained to be split over clients too.
    """
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state_layout = sharding.client_shardings(
        jax.eval_shape(algorithm.init, params), mesh, algorithm.num_clients
    )

    def train_round(state, mixing, client_data, t):
        key, batches = sample_round(algorithm, client_data, t)
        batches = sharding.constrain(batches, mesh, algorithm.cohort_size)
        return algorithm.round(state, mixing, batches, key)

    return jax.jit(
        train_round,
        in_shardings=(
            state_layout,
            replicated,
            sharding.client_shardings(client_data, mesh),
            replicated,
        ),
        out_shardings=(state_layout, replicated),
    )


def run_sharded(name, algorithm, mixing, mesh, params, client_data, inputs):
    """The final state and metrics of case ``name`` sharded over ``mesh``."""
    state = sharding.shard_clients(algorithm.init(params), mesh, NUM_CLIENTS)
    mixing = sharding.replicate(mixing, mesh)
    if name.endswith("_in_jit"):
        round_fn = in_jit_round(algorithm, mesh, params, client_data)
        train = sharding.shard_clients(client_data, mesh)
        for t in range(ROUNDS):
            state, metrics = round_fn(state, mixing, train, sharding.replicate(np.int32(t), mesh))
        return state, metrics
    # sharded_round places the batches and the key (built on one device) itself.
    return run_rounds(sharding.sharded_round(algorithm, mesh), inputs, state, mixing, client_data)


def describe_layout(params) -> dict:
    """How the first parameter leaf is laid out."""
    leaf = jax.tree.leaves(params)[0]
    return {
        "spec": str(leaf.sharding.spec),
        "num_devices": len(leaf.sharding.device_set),
        "num_local_shards": len(leaf.addressable_shards),
        "local_shard_rows": sorted({s.data.shape[0] for s in leaf.addressable_shards}),
    }


def flat_arrays(prefix, tree) -> dict:
    """``{prefix/<leaf path>: array}`` for an ``.npz`` file."""
    return {
        f"{prefix}/{jax.tree_util.keystr(path)}": np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def max_abs_diff(a, b) -> float:
    return max(
        float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def error_messages(mesh, loss_fn) -> dict:
    """The ValueError messages of leaves and algorithms that cannot be split over ``mesh``."""
    messages = {}
    try:
        sharding.sharded_round(algorithms.dfedavg(loss_fn, learning_rate=0.1, num_clients=15), mesh)
    except ValueError as e:
        messages["round_indivisible"] = str(e)
    bad = {
        "indivisible": ({"w": np.zeros((NUM_CLIENTS - 1, 3), np.float32)}, None),
        "scalar": ({"round": np.int32(0)}, None),
        "indivisible_state": ({"w": np.zeros((NUM_CLIENTS - 1, 3), np.float32)}, 15),
    }
    for label, (tree, num_clients) in bad.items():
        try:
            sharding.shard_clients(tree, mesh, num_clients)
        except ValueError as e:
            messages[label] = str(e)
        else:
            messages[label] = ""
    return messages


def main() -> None:
    cases = {name: sizes or [jax.device_count()] for name, sizes in REQUESTED.items()}
    client_data, loss_fn, params = make_problem()
    algorithms_by_name = make_algorithms(loss_fn)
    inputs_by_name, references = {}, {}
    on_local = lambda tree: jax.device_put(tree, jax.local_devices()[0])
    results, arrays = {}, {}
    for name, sizes in cases.items():
        start = time.perf_counter()
        algorithm_name, mixing_kind = case_spec(name)
        algorithm, mixing = algorithms_by_name[algorithm_name], make_mixing(mixing_kind)
        if algorithm_name not in inputs_by_name:
            inputs_by_name[algorithm_name] = round_inputs(algorithm)
        inputs = inputs_by_name[algorithm_name]
        result = {}
        if ARGS.reference:
            if (algorithm_name, mixing_kind) not in references:
                state, _ = run_rounds(
                    jax.jit(algorithm.round),
                    inputs,
                    on_local(algorithm.init(params)),
                    on_local(mixing),
                    on_local(client_data),
                )
                references[algorithm_name, mixing_kind] = jax.tree.map(np.asarray, state.params)
            reference = references[algorithm_name, mixing_kind]
            result["reference_fingerprint"] = params_fingerprint(reference)
            arrays.update(flat_arrays(f"{name}/reference", reference))
        for size in sizes:
            mesh = sharding.client_mesh(jax.devices()[:size])
            state, metrics = run_sharded(name, algorithm, mixing, mesh, params, client_data, inputs)
            host = sharding.to_host(state.params)
            arrays.update(flat_arrays(f"{name}/mesh{size}", host))
            result[f"mesh{size}"] = {
                "sharded_fingerprint": params_fingerprint(host),
                "layout": describe_layout(state.params),
                "train_loss": float(sharding.to_host(metrics["train_loss"])),
            }
            if ARGS.reference:
                result[f"mesh{size}"].update(
                    bitwise_equal=params_fingerprint(host) == result["reference_fingerprint"],
                    max_abs_diff=max_abs_diff(host, reference),
                )
        result["seconds"] = round(time.perf_counter() - start, 2)
        results[name] = result
    report = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "global_devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "cases": results,
        "errors": error_messages(sharding.client_mesh(), loss_fn) if jax.device_count() > 1 else {},
    }
    with open(ARGS.out + ".npz.tmp", "wb") as f:
        np.savez(f, **arrays)
    os.replace(ARGS.out + ".npz.tmp", ARGS.out + ".npz")
    tmp = ARGS.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    os.replace(tmp, ARGS.out)
    if ARGS.num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
