#!/usr/bin/env python3
"""What privacy costs: a DP-FedSAM round against a FedSAM round, and a DP-SGD local step
against a plain one, each pair timed in one process, interleaved.

Two measurements:

* ``round``: one round of N clients of which m train K SAM steps (MLP 60-200-200-10 on
  FedProx synthetic(1, 1), B examples per step), batch sampling included, one jitted
  function each:

  - ``fedsam``: m clients sampled without replacement;
  - ``dp_fedsam-fixed``: the same m clients, each update clipped and noised before it is
    sent (the cost of privatizing, same work otherwise);
  - ``dp_fedsam-poisson``: Poisson sampling, whose cohort is padded to a static number of
    slots (``qN + 6 sqrt(qN(1 - q))``); with ``vmap`` the padding slots train and are
    discarded, so this row also prices the padding that static shapes need;
  - ``fedsam-chunked`` and ``dp_fedsam-poisson-chunked``: clients in chunks of m (the
    runner's CPU default), where chunks with no client taking part are skipped.

  Target: ``dp_fedsam-fixed`` / ``fedsam`` <= 1.15.
* ``step``: one client's K local SGD steps (``local.local_train``, jitted) with the batch
  gradient against DP-SGD's per-example clipped, noised gradient
  (``gradients.per_example_clipped_gradient(C, sigma)``: ghost clipping for these models),
  for the MLP (60-200-200-10) and the EMNIST CNN (28x28x1, conv5x5-32, pool, conv5x5-64,
  pool, fc 512, 62 classes), batch B. Two more rows split the cost: ``clip-only`` (sigma 0)
  and ``plain+noise`` (the batch gradient plus the same Gaussian noise).
  Target: private / plain <= 3 per step.

The figure is the median over ``--repeats`` timed calls after one untimed (compile) call.

Example::

  python benchmarks/privacy.py --out benchmarks/results/privacy_cpu.json
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Runner
from common import command_line
from common import log
from common import log_machine
from common import machine_info
from common import round_step
from common import run_interleaved
from common import step_problem
from common import write_result

from fedjax_lab import algorithms
from fedjax_lab import clients
from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab import models
from fedjax_lab import transforms
from fedjax_lab.algorithms import private
from fedjax_lab.data import make_federated_dataset
from fedjax_lab.objectives import cross_entropy_loss
from fedjax_lab.runner import execution

LR, RHO, CLIP, SIGMA = 0.05, 0.05, 0.2, 0.95
ROUND_TARGET, STEP_TARGET = 1.15, 3.0


def round_runners(num_clients: int, cohort: int, steps: int, batch: int) -> list[Runner]:
    data = make_federated_dataset("synthetic", num_clients, seed=0).train
    model = models.make_model("mlp", 10, hidden_sizes=(200, 200))
    params = models.init_params(model, (60,), jax.random.key(0))
    loss_fn = cross_entropy_loss(lambda p, x: model.apply({"params": p}, x))
    sam = transforms.sam_sgd(LR, RHO)
    dp = private.DPSettings(clip_norm=CLIP, noise_multiplier=SIGMA, delta=1e-5)
    fedsam = algorithms.fedsam(
        loss_fn, learning_rate=LR, rho=RHO, num_clients=num_clients, clients_per_round=cohort
    )
    dp_fixed = private.dp_fedavg(
        loss_fn,
        sam,
        num_clients=num_clients,
        clients_per_round=cohort,
        settings=dp,
        sampling="fixed",
    )
    dp_poisson = private.dp_fedavg(
        loss_fn, sam, num_clients=num_clients, clients_per_round=cohort, settings=dp
    )
    vmap, chunked = clients.VMAP, clients.Execution("chunked", chunk_size=cohort)
    # Each variant: an algorithm and how its clients are mapped.
    built = {
        "fedsam": (fedsam, vmap),
        "fedsam-chunked": (fedsam, chunked),
        "dp_fedsam-fixed": (dp_fixed, vmap),
        "dp_fedsam-poisson": (dp_poisson, vmap),
        "dp_fedsam-poisson-chunked": (dp_poisson, chunked),
    }
    for name, (alg, _) in built.items():
        log(f"  {name}: {alg.cohort_size} client slots per round")
    return [
        Runner(
            name,
            "jax",
            round_step(
                alg, params, None, data, jax.random.key(1), steps, batch, execution=how
            ),
        )
        for name, (alg, how) in built.items()
    ]


def noisy_batch_gradient(std: float):
    """The batch gradient plus DP-SGD's Gaussian noise, drawn as the DP hook draws it: what
    the noise alone costs."""

    def gradient(loss_fn, params, batch, key):
        loss, grads = gradients.batch_gradient(loss_fn, params, batch, key)
        leaves, tree = jax.tree.flatten(grads)
        keys = jax.random.split(key, len(leaves))
        noisy = [g + std * jax.random.normal(k, g.shape, g.dtype) for g, k in zip(leaves, keys)]
        return loss, jax.tree.unflatten(tree, noisy)

    return gradient


def step_runners(model_name: str, steps: int, batch: int) -> list[Runner]:
    params, loss_fn, batches = step_problem(model_name, steps, batch)
    key = jax.random.key(2)
    hooks = {
        "plain": gradients.batch_gradient,
        "dp-sgd": gradients.per_example_clipped_gradient(CLIP, SIGMA),
        "clip-only": gradients.per_example_clipped_gradient(CLIP, 0.0),
        "plain+noise": noisy_batch_gradient(SIGMA * CLIP / batch),
    }
    runners = []
    for name, hook in hooks.items():
        train = jax.jit(
            lambda p, b, k, hook=hook: (
                local.local_train(optax.sgd(LR), loss_fn, p, b, k, gradient=hook).params
            )
        )

        def step(train=train):
            jax.block_until_ready(train(params, batches, key))

        runners.append(Runner(f"{model_name}-{name}", "jax", step))
    return runners


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--cohort", type=int, default=10)
    parser.add_argument("--local-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    info = machine_info(execution.use_cpu_cores(1))
    log_machine(info)
    result = {"machine": info, "command": command_line(argv), "round": {}, "step": {}}

    log(f"round: N={args.clients}, m={args.cohort}, K={args.local_steps}, B={args.batch_size}")
    times = run_interleaved(
        round_runners(args.clients, args.cohort, args.local_steps, args.batch_size),
        args.repeats,
    )
    base = times["fedsam"]["median_s"]
    for name, t in times.items():
        t["ratio_to_fedsam"] = t["median_s"] / base
        log(f"  {name:<20s} {t['median_s'] * 1e3:8.1f} ms  {t['ratio_to_fedsam']:.3f}x fedsam")
    ratio = times["dp_fedsam-fixed"]["ratio_to_fedsam"]
    chunked = times["dp_fedsam-poisson-chunked"]["median_s"] / times["fedsam-chunked"]["median_s"]
    log(f"  dp_fedsam-poisson-chunked / fedsam-chunked: {chunked:.3f}x")
    result["round"] = {
        "times": times,
        "poisson_chunked_ratio": chunked,
        "target": f"dp_fedsam-fixed / fedsam <= {ROUND_TARGET}",
        "met": ratio <= ROUND_TARGET,
    }

    for model_name in ("mlp", "emnist_cnn"):
        log(f"step: {model_name}, K={args.local_steps}, B={args.batch_size}")
        times = run_interleaved(
            step_runners(model_name, args.local_steps, args.batch_size), args.repeats
        )
        plain = times[f"{model_name}-plain"]["median_s"]
        private_s = times[f"{model_name}-dp-sgd"]["median_s"]
        ratio = private_s / plain
        for name, t in times.items():
            t["ratio_to_plain"] = t["median_s"] / plain
            log(
                f"  {name:<24s} {t['median_s'] / args.local_steps * 1e3:7.2f} ms/step  "
                f"{t['ratio_to_plain']:.2f}x plain"
            )
        result["step"][model_name] = {
            "times": times,
            "ratio": ratio,
            "target": f"dp-sgd / plain <= {STEP_TARGET}",
            "met": ratio <= STEP_TARGET,
        }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
