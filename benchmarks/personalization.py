#!/usr/bin/env python3
"""What push-sum costs: a DFedPGP round against a DFedAvg round, timed in one process,
interleaved.

One round of N clients, each running K local steps (MLP 60-200-200-10 on FedProx
synthetic(1, 1), B examples per step), batch sampling included, one jitted function each:

* ``dfedavg``: K SGD steps on the whole model, then plain gossip of the whole model over
  ``random_in_neighbours`` (k in-neighbours, row stochastic);
* ``dfedalt``: K/2 steps on the head, then K/2 on the body, then gossip of the body over
  the same graph (what alternating phases and a partition cost);
* ``dfedpgp``: dfedalt's phases, then push-sum of the body's update over
  ``random_out_neighbours`` (k out-neighbours, column stochastic; the same edge count);
* ``dfedpgp-pull``: the released code's variant, dfedalt's phases with gossip over
  ``random_in_neighbours``.

Each is run with the dense mixing matrix (what ``communication.form="auto"`` picks at 11%
density) and, with ``--sparse``, the sparse one too. Target: ``dfedpgp`` / ``dfedavg``
<= 1.3, same N, same steps, same mixing form. The figure is the median over ``--repeats``
timed calls after one untimed (compile) call.

Example::

  python benchmarks/personalization.py --sparse --out benchmarks/results/personalization_cpu.json
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Runner
from common import command_line
from common import log
from common import log_machine
from common import machine_info
from common import round_step
from common import run_interleaved
from common import write_result

from fedjax_lab import algorithms
from fedjax_lab import gossip
from fedjax_lab import models
from fedjax_lab import topology
from fedjax_lab.algorithms import personalized
from fedjax_lab.data import make_federated_dataset
from fedjax_lab.objectives import cross_entropy_loss
from fedjax_lab.runner import execution

LR = 0.05
TARGET = 1.3


def runners(num_clients: int, degree: int, steps: int, batch: int, sparse: bool) -> list[Runner]:
    data = make_federated_dataset("synthetic", num_clients, seed=0).train
    model = models.make_model("mlp", 10, hidden_sizes=(200, 200))
    params = models.init_params(model, (60,), jax.random.key(0))
    loss_fn = cross_entropy_loss(lambda p, x: model.apply({"params": p}, x))
    pull = topology.random_in_neighbours(num_clients, degree, seed=0).matrix(0)
    push = topology.random_out_neighbours(num_clients, degree, seed=0).matrix(0)
    form = (lambda w: gossip.to_sparse(w)) if sparse else jnp.asarray
    phases = dict(num_clients=num_clients, head_steps=steps // 2, body_steps=steps - steps // 2)
    sgd = optax.sgd(LR)
    built = {
        "dfedavg": (algorithms.dfedavg(loss_fn, learning_rate=LR, num_clients=num_clients), pull),
        "dfedalt": (
            personalized.dfedalt(loss_fn, sgd, sgd, order="train_then_gossip", **phases),
            pull,
        ),
        "dfedpgp": (personalized.dfedpgp(loss_fn, sgd, sgd, **phases), push),
        "dfedpgp-pull": (personalized.dfedpgp(loss_fn, sgd, sgd, push="off", **phases), pull),
    }
    suffix = "-sparse" if sparse else ""
    return [
        Runner(
            name + suffix,
            "jax",
            round_step(alg, params, form(w), data, jax.random.key(1), steps, batch),
        )
        for name, (alg, w) in built.items()
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--degree", type=int, default=10)
    parser.add_argument("--local-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--sparse", action="store_true", help="time the sparse forms too")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    info = machine_info(execution.use_cpu_cores(1))
    log_machine(info)
    log(f"round: N={args.clients}, k={args.degree}, K={args.local_steps}, B={args.batch_size}")
    result = {"machine": info, "command": command_line(argv), "forms": {}}
    for sparse in (False, True) if args.sparse else (False,):
        times = run_interleaved(
            runners(args.clients, args.degree, args.local_steps, args.batch_size, sparse),
            args.repeats,
        )
        suffix = "-sparse" if sparse else ""
        base = times["dfedavg" + suffix]["median_s"]
        for name, t in times.items():
            t["ratio_to_dfedavg"] = t["median_s"] / base
            log(
                f"  {name:<20s} {t['median_s'] * 1e3:8.1f} ms  {t['ratio_to_dfedavg']:.3f}x dfedavg"
            )
        ratio = times["dfedpgp" + suffix]["ratio_to_dfedavg"]
        result["forms"]["sparse" if sparse else "dense"] = {
            "times": times,
            "target": f"dfedpgp / dfedavg <= {TARGET}",
            "ratio": ratio,
            "met": ratio <= TARGET,
        }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
