#!/usr/bin/env python3
"""Cost of sharding the client axis: one DFedSAM round over 1, 2, 4, ... devices.

Workload (one round, as ``experiment.build`` runs it): batches sampled on device from the
clients' padded data, then ``dfedsam(...).round``: every one of N clients runs K SAM steps on
batches of B examples, then one ring gossip step (dense ``W``, ``SparseMixing`` or
``CirculantMixing``). Model: MLP 60-200-200-10 on FedProx synthetic(1, 1), as in
``throughput.py``.

Variants, all in one process over ``--devices`` host-platform devices:

* ``unsharded``: plain ``jax.jit`` on one device (the baseline);
* ``sharded-D``: state and client data split over a mesh of the first D devices
  (:mod:`fedjax_lab.sharding`), mixing replicated, batches constrained to the client split,
  with the mesh in ``clients.Execution(mesh=...)`` as the experiment runner does.

On a CPU, host-platform devices run in parallel on the machine's cores (one XLA:CPU device
runs these small per-client matmuls on one core), so up to one device per core is a speed-up
and more devices than cores add only the partitioned program's overhead; on a machine with
several accelerators the same script measures scaling across them.

Metric: median seconds per round (after one warm-up round) and client-steps per second.

Example::

  python benchmarks/sharding.py --devices 8 --clients 64 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8, help="host-platform devices")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per variant")
    parser.add_argument("--local-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mixing", nargs="+", default=["dense", "sparse", "circulant"])
    parser.add_argument("--out", default="", help="JSON file for the results")
    return parser.parse_args()


ARGS = parse_args()
if ARGS.devices < 1 or ARGS.clients % ARGS.devices:
    sys.exit(
        f"Expected --devices >= 1 dividing --clients, got {ARGS.devices} devices for "
        f"{ARGS.clients} clients."
    )
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={ARGS.devices}"]
).strip()

import jax  # after XLA_FLAGS is set
import jax.numpy as jnp
import numpy as np

from fedjax_lab import clients
from fedjax_lab import data
from fedjax_lab import gossip
from fedjax_lab import models
from fedjax_lab import objectives
from fedjax_lab import sharding
from fedjax_lab import topology
from fedjax_lab.algorithms import dfedsam
from fedjax_lab.randomness import Stream
from fedjax_lab.randomness import stream


def make_round(algorithm, mesh, params, train):
    """A jitted ``(state, mixing, train, t) -> (state, metrics)``, sharded when ``mesh``."""
    root = jax.random.key(0)

    def train_round(state, mixing, train, t):
        key = jax.random.fold_in(root, t)
        batches = data.sample_batches(
            train,
            algorithm.cohort(key),
            stream(key, Stream.DATA),
            ARGS.local_steps,
            ARGS.batch_size,
        )
        if mesh is not None:
            batches = sharding.constrain(batches, mesh, algorithm.cohort_size)
        # With the mesh in the execution value, each device maps its own clients.
        return algorithm.round(state, mixing, batches, key, clients.Execution(mesh=mesh))

    if mesh is None:
        return jax.jit(train_round)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state_layout = sharding.client_shardings(
        jax.eval_shape(algorithm.init, params), mesh, algorithm.num_clients
    )
    return jax.jit(
        train_round,
        in_shardings=(state_layout, replicated, sharding.client_shardings(train, mesh), replicated),
        out_shardings=(state_layout, replicated),
    )


def time_rounds(round_fn, state, mixing, train, place_index) -> float:
    state, metrics = round_fn(state, mixing, train, place_index(0))  # compile and warm up
    jax.block_until_ready(metrics)
    times = []
    for t in range(1, ARGS.rounds + 1):
        start = time.perf_counter()
        state, metrics = round_fn(state, mixing, train, place_index(t))
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    n = ARGS.clients
    dataset = data.make_federated_dataset("synthetic", n, seed=0)
    model = models.make_model("mlp", dataset.num_classes, hidden_sizes=(200, 200))
    params = models.init_params(model, dataset.input_shape, jax.random.key(1))
    loss_fn = objectives.cross_entropy_loss(lambda p, x: model.apply({"params": p}, x))
    algorithm = dfedsam(loss_fn, learning_rate=0.05, rho=0.05, num_clients=n)
    ring = topology.ring(n).matrix(0)
    sizes = [d for d in (1, 2, 4, 8, 16, 32) if d <= ARGS.devices and n % d == 0]
    results = []
    for kind in ARGS.mixing:
        mixing = {
            "dense": lambda: jnp.asarray(ring),
            "sparse": lambda: gossip.to_sparse(ring),
            "circulant": lambda: gossip.to_circulant(ring),
        }[kind]()
        variants = [("unsharded", None)] + [
            (f"sharded-{d}", sharding.client_mesh(jax.devices()[:d])) for d in sizes
        ]
        for label, mesh in variants:
            state = algorithm.init(params)
            if mesh is None:
                args = (state, mixing, dataset.train, jnp.int32)
            else:
                args = (
                    sharding.shard_clients(state, mesh, n),
                    sharding.replicate(mixing, mesh),
                    sharding.shard_clients(dataset.train, mesh),
                    lambda t, mesh=mesh: sharding.replicate(np.int32(t), mesh),
                )
            seconds = time_rounds(make_round(algorithm, mesh, params, dataset.train), *args)
            row = {
                "mixing": kind,
                "variant": label,
                "seconds_per_round": round(seconds, 4),
                "client_steps_per_s": round(n * ARGS.local_steps / seconds, 1),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    if ARGS.out:
        report = {
            "config": vars(ARGS),
            "jax": jax.__version__,
            "cpu_count": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "results": results,
        }
        pathlib.Path(ARGS.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
