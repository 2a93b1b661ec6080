#!/usr/bin/env python3
"""What a zeroth-order local step costs, in forward passes of the same batch.

One client runs K local steps (``local.local_train``, jitted) of
``chain(zo_gradient(mu, q, distribution=...), sgd)`` with ``gradient=None``, Gaussian and
Rademacher directions: each step evaluates the loss at
``2q`` perturbed points (at once, ``vmap`` over the directions) and once more at the
current point for the step's reported loss, so ``2q + 1`` forward passes. The reference is
K forward passes of the same batches in the same kind of loop (``lax.scan``), the parameters
changing every step as in training. Target: a
two-point step costs at most ``1.2 (2q + 1)`` forward passes, so that no backward pass
hides in it. MLP 60-200-200-10, the EMNIST CNN and Fed-BBPT's workload (a prompt generator
in front of the black-box ``digits_cnn``, whose 128 prompt parameters make the directions
nearly free), batch B, median of ``--repeats`` timed calls after one untimed (compile) call,
interleaved.

Example::

  python benchmarks/zeroth_order.py --out benchmarks/results/zeroth_order_cpu.json
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
from common import run_interleaved
from common import step_problem
from common import write_result

from fedjax_lab import local
from fedjax_lab import transforms
from fedjax_lab.runner import execution

TARGET = 1.2
DISTRIBUTIONS = ("gaussian", "rademacher")


def runners(model_name: str, directions: list[int], steps: int, batch: int) -> list[Runner]:
    params, loss_fn, batches = step_problem(model_name, steps, batch)
    key = jax.random.key(2)

    def forward_steps(p, b):  # new parameters every step, as in training (no hoisting)
        def step(q, bk):
            loss = loss_fn(q, bk)
            return jax.tree.map(lambda x: x * (1.0 + 1e-6 * loss), q), None

        return jax.lax.scan(step, p, b)[0]

    forward = jax.jit(forward_steps)
    out = [
        Runner(
            f"{model_name}-forward", "jax", lambda: jax.block_until_ready(forward(params, batches))
        )
    ]
    for distribution in DISTRIBUTIONS:
        for q in directions:
            opt = optax.chain(
                transforms.zo_gradient(1e-3, q, distribution=distribution), optax.sgd(0.01)
            )
            train = jax.jit(
                lambda p, b, k, opt=opt: (
                    local.local_train(opt, loss_fn, p, b, k, gradient=None).params
                )
            )
            out.append(
                Runner(
                    f"{model_name}-{distribution}-q{q}",
                    "jax",
                    lambda train=train: jax.block_until_ready(train(params, batches, key)),
                )
            )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mlp-directions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--cnn-directions", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--prompt-directions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    info = machine_info(execution.use_cpu_cores(1))
    log_machine(info)
    result = {"machine": info, "command": command_line(argv), "models": {}}
    for model_name, directions in (
        ("mlp", args.mlp_directions),
        ("emnist_cnn", args.cnn_directions),
        ("prompt", args.prompt_directions),
    ):
        log(f"{model_name}: K={args.local_steps}, B={args.batch_size}, q={directions}")
        times = run_interleaved(
            runners(model_name, directions, args.local_steps, args.batch_size), args.repeats
        )
        forward = times[f"{model_name}-forward"]["median_s"]
        log(f"  forward pass: {forward / args.local_steps * 1e3:.3f} ms")
        met = {}
        for distribution in DISTRIBUTIONS:
            for q in directions:
                t = times[f"{model_name}-{distribution}-q{q}"]
                t["forward_passes"] = t["median_s"] / forward
                t["ratio_to_2q_plus_1"] = t["forward_passes"] / (2 * q + 1)
                t["met"] = t["ratio_to_2q_plus_1"] <= TARGET
                met.setdefault(distribution, []).append(t["met"])
                log(
                    f"  {distribution:<10s} q={q:<3d} {t['median_s'] / args.local_steps * 1e3:8.3f}"
                    f" ms/step = {t['forward_passes']:.2f} forward passes, "
                    f"{t['ratio_to_2q_plus_1']:.2f} x (2q + 1)"
                )
        result["models"][model_name] = {
            "times": times,
            "target": f"zo step <= {TARGET} x (2q + 1) forward passes",
            "met": {d: all(m) for d, m in met.items()},
        }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
