#!/usr/bin/env python3
"""Throughput of one DFedSAM round of the EMNIST CNN: fedjax_lab (JAX) against a PyTorch loop.

Workload (one round): every one of N clients runs K SAM steps (radius rho, then an SGD step
with learning rate lr) on batches of B of its own examples, then one ring gossip step
``x_i <- (x_{i-1} + x_i + x_{i+1}) / 3``. Model: the EMNIST CNN (conv5x5-32, maxpool 2x2,
conv5x5-64, maxpool 2x2, Dense 512, Dense C) on 28x28x1 inputs. Data: random normal images
with random labels in C = 62 classes, ``--examples`` per client (synthetic; only speed is
measured).

Implementations, all timed in the same process and interleaved round by round (so a load
spike from another process hits all of them alike):

* ``jax-<conv>-<strategy>[-unroll][-noynn][-d<D>]``: one jitted function =
  ``sample_batches`` for all clients + ``dfedsam(...).round`` with a dense ring mixing
  matrix, under ``clients.Execution(strategy, chunk_size, unroll)``. ``conv`` is the
  ``EmnistCNN(conv=...)`` implementation (``flax``: ``nn.Conv`` and ``nn.max_pool``;
  ``custom``: :mod:`fedjax_lab.models.conv`), ``strategy`` the client execution (``vmap``,
  ``sequential``, ``chunked<C>``), ``-unroll`` means the execution's ``unroll=True`` for the
  K local steps and ``-noynn`` compiles the round with the XLA:CPU option that keeps
  convolutions and dots off YNNPACK. ``-d<D>`` splits the clients over D devices
  (:mod:`fedjax_lab.sharding`: state and data split, mixing replicated, batches sampled by a
  separate jitted function, then ``sharded_round``; not combinable with ``noynn``); without
  it everything runs on the default device. Variants are given as
  ``conv:strategy:unroll[:noynn][:dD]`` (``dall``: every device; N must be divisible by D),
  e.g. ``custom:chunked4:1``, ``flax:vmap:T:noynn`` or ``custom:sequential:T:d2``.
* ``torch-loop-<T>t``: one ``nn.Sequential`` CNN, ``load_state_dict`` per client from a stored
  per-client state, K SAM steps with an SGD optimizer, state saved back, then ring gossip of
  the per-client flat parameter vectors; ``torch.set_num_threads(T)`` for each T of
  ``--torch-threads`` (the first one is the reference of the "vs torch" ratio).

Metrics: client-steps per second = N * K / (median seconds per round), the ratio to the torch
loop, and achieved GFLOP/s of the local steps. FLOPs per example of one forward pass:
``2 * H * W * kh * kw * C_in * C_out`` per convolution (at its output size) plus
``2 * d_in * d_out`` per Dense layer; x3 for forward + backward, x2 for the two gradients of a
SAM step. (The first convolution's input gradient is counted though nobody computes it.)
The dense fp32 matmul peak (jitted 2048^2, on one device) is measured in the same run.

JAX devices: ``--cpu-devices D`` asks JAX for D CPU devices (default: one per usable core,
``fedjax_lab.runner.execution.use_cpu_cores``) before anything else touches JAX. One CPU device runs
a round on one core, so the ``dD`` variants are the ones that use several cores. On a GPU or
TPU machine the accelerators are the devices. Default variants: ``flax:vmap:T``,
``custom:sequential:T``, ``custom:sequential:T:dall`` and ``custom:sequential:1:dall`` at
N < ``--large-n``; ``custom:sequential:T`` and ``custom:sequential:T:dall`` at larger N.

Example::

  python benchmarks/cnn_throughput.py --clients 20 100 --local-steps 5 --batch-size 32 --rounds 3
  python benchmarks/cnn_throughput.py --clients 20 --cpu-devices 2 --variants custom:vmap:T:d2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (
    Column,
    Runner,
    best_jax_target,
    check_devices,
    command_line,
    device_suffix,
    is_device_part,
    log,
    log_machine,
    log_table,
    machine_info,
    matmul_peak,
    parse_device_part,
    ratio_text,
    torch_loop_runner,
    result_rows,
    round_step,
    run_interleaved,
    write_result,
)

from fedjax_lab import clients as clients_lib
from fedjax_lab.algorithms import dfedsam
from fedjax_lab.data import stack_clients
from fedjax_lab.models import EmnistCNN
from fedjax_lab.objectives import cross_entropy_loss
from fedjax_lab.runner import execution
from fedjax_lab.topology import ring

IMAGE = (28, 28, 1)
CONVS = ((5, 1, 32), (5, 32, 64))  # (kernel, C_in, C_out), SAME, each followed by a 2x2 pool
HIDDEN = 512
# XLA:CPU compiler option for the ``:noynn`` variants: no convolution or dot is handed to
# YNNPACK (XLA's Eigen kernels run them instead).
NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}

# The default run: the fastest flax formulation as the baseline and the custom-VJP CNN run
# sequentially on one device and with the clients split over every device (unrolled or not)
# at N = 20; the fastest one-device and split variants at N = 100.
DEFAULT_VARIANTS = (
    "flax:vmap:T",
    "custom:sequential:T",
    "custom:sequential:T:dall",
    "custom:sequential:1:dall",
)
DEFAULT_LARGE_VARIANTS = ("custom:sequential:T", "custom:sequential:T:dall")


# --------------------------------------------------------------------------- #
# Workload size.
# --------------------------------------------------------------------------- #


def forward_flops_per_example(num_classes: int) -> float:
    """``sum_conv 2 H W kh kw C_in C_out + sum_dense 2 d_in d_out`` for one 28x28x1 image."""
    h, w, _ = IMAGE
    total = 0.0
    for k, c_in, c_out in CONVS:
        total += 2.0 * h * w * k * k * c_in * c_out
        h, w = h // 2, w // 2
    flat = h * w * CONVS[-1][2]
    return total + 2.0 * flat * HIDDEN + 2.0 * HIDDEN * num_classes


def train_flops(n: int, k: int, b: int, num_classes: int) -> float:
    """Forward x3 (forward + backward) x2 (SAM: two gradients) per example, N*K*B examples."""
    return 3.0 * 2.0 * forward_flops_per_example(num_classes) * b * k * n


def num_params(num_classes: int) -> int:
    convs = sum(k * k * c_in * c_out + c_out for k, c_in, c_out in CONVS)
    flat = (IMAGE[0] // 4) * (IMAGE[1] // 4) * CONVS[-1][2]
    return convs + flat * HIDDEN + HIDDEN + HIDDEN * num_classes + num_classes


# --------------------------------------------------------------------------- #
# Data.
# --------------------------------------------------------------------------- #


def random_clients(n: int, examples: int, num_classes: int, seed: int):
    """N clients of ``examples`` random normal 28x28x1 images with uniform random labels."""
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((examples, *IMAGE), dtype=np.float32) for _ in range(n)]
    ys = [rng.integers(0, num_classes, examples).astype(np.int32) for _ in range(n)]
    return stack_clients(xs, ys)


# --------------------------------------------------------------------------- #
# Runners: each does one round per call and blocks until it is done.
# --------------------------------------------------------------------------- #


class Variant(NamedTuple):
    """A parsed JAX variant; ``devices`` None means every device (``dall``)."""

    conv: str
    strategy: str
    chunk: int | None
    unroll: bool
    no_ynn: bool
    devices: int | None


def parse_variant(spec: str) -> Variant:
    """``conv:strategy:unroll[:noynn][:dD]`` -> :class:`Variant`; ValueError if malformed."""
    parts = spec.split(":")
    extra = parts[3:]
    no_ynn = "noynn" in extra
    device_parts = [p for p in extra if is_device_part(p)]
    if (
        len(parts) < 3
        or len(extra) != no_ynn + len(device_parts)
        or len(device_parts) > 1
        or (no_ynn and extra[0] != "noynn")
    ):
        raise ValueError(
            f"Bad variant {spec!r}; expected conv:strategy:unroll[:noynn][:dD], e.g. "
            "custom:vmap:T or custom:sequential:T:d2."
        )
    conv, strategy, unroll = parts[:3]
    if conv not in ("flax", "custom"):
        raise ValueError(f"Bad conv {conv!r} in variant {spec!r}; expected flax or custom.")
    chunk = None
    if strategy.startswith("chunked"):
        digits = strategy[len("chunked") :]
        if not digits.isdigit() or int(digits) < 1:
            raise ValueError(f"Bad chunked strategy {strategy!r} in {spec!r}; e.g. chunked4.")
        strategy, chunk = "chunked", int(digits)
    elif strategy not in ("vmap", "sequential"):
        raise ValueError(
            f"Bad strategy {strategy!r} in variant {spec!r}; expected vmap, sequential, chunkedC."
        )
    if unroll not in ("1", "T"):
        raise ValueError(f"Bad unroll {unroll!r} in variant {spec!r}; expected 1 or T.")
    devices = parse_device_part(device_parts[0], spec) if device_parts else 1
    if no_ynn and devices != 1:
        raise ValueError(
            f"Variant {spec!r}: noynn (compiler options) cannot be combined with the clients "
            "split over devices (sharding.sharded_round compiles the round itself)."
        )
    return Variant(conv, strategy, chunk, unroll == "T", no_ynn, devices)


def resolve_variants(specs: list[str], clients: list[int], available: int) -> list[Variant]:
    """The variants of ``specs`` timed at ``clients``, with ``dall`` = ``available`` devices.

    A variant equal to an earlier one (``dall`` on a single device) is dropped.

    Raises:
      ValueError: a variant asks for more devices than ``available``, or for a device count
        that does not divide a value of N.
    """
    resolved = []
    for spec in specs:
        v = parse_variant(spec)
        v = v._replace(devices=check_devices(v.devices, spec, available, clients))
        if v in resolved:
            log(f"variant {spec} is the same as an earlier one on this machine; timed once")
        else:
            resolved.append(v)
    return resolved


def variant_name(v: Variant) -> str:
    s = f"chunked{v.chunk}" if v.strategy == "chunked" else v.strategy
    return (
        f"jax-{v.conv}-{s}"
        + ("-unroll" if v.unroll else "")
        + ("-noynn" if v.no_ynn else "")
        + device_suffix(v.devices)
    )


def make_jax_runner(data, args, n: int, v: Variant) -> Runner:
    model = EmnistCNN(num_classes=args.num_classes, conv=v.conv)
    params = model.init(jax.random.key(args.seed), jnp.zeros((1, *IMAGE), jnp.float32))
    alg = dfedsam(
        cross_entropy_loss(model.apply), learning_rate=args.lr, rho=args.rho, num_clients=n
    )
    step = round_step(
        alg,
        params,
        jnp.asarray(ring(n).matrix(0)),
        data,
        jax.random.key(args.seed + 1),
        args.local_steps,
        args.batch_size,
        devices=v.devices,
        compiler_options=NO_YNN if v.no_ynn else None,
        execution=clients_lib.Execution(v.strategy, v.chunk, True if v.unroll else 1),
    )
    return Runner(variant_name(v), "jax", step)


def make_torch_runner(data, args, n: int, threads: int) -> Runner:
    """The PyTorch per-client loop (:func:`common.torch_loop_runner`) on the same CNN."""
    import torch
    from torch import nn

    torch.manual_seed(args.seed)  # the initial model
    (k0, c0, c1), (k1, _, c2) = CONVS
    flat = (IMAGE[0] // 4) * (IMAGE[1] // 4) * c2
    model = nn.Sequential(
        nn.Conv2d(c0, c1, k0, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, k1, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, args.num_classes),
    )
    # Per-client data in NCHW, without the padding rows.
    x_all = np.ascontiguousarray(np.asarray(data.x).transpose(0, 1, 4, 2, 3))
    y_all = np.asarray(data.y).astype(np.int64)
    counts = np.asarray(data.num_examples)
    xs = [torch.from_numpy(x_all[i, : counts[i]].copy()) for i in range(n)]
    ys = [torch.from_numpy(y_all[i, : counts[i]].copy()) for i in range(n)]
    return torch_loop_runner(
        f"torch-loop-{threads}t",
        model,
        xs,
        ys,
        local_steps=args.local_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        rho=args.rho,
        seed=args.seed,
        threads=threads,
        device=args.torch_device,
    )


# --------------------------------------------------------------------------- #
# Main.
# --------------------------------------------------------------------------- #


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clients", type=int, nargs="+", default=[20, 100], help="values of N")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per implementation")
    p.add_argument("--local-steps", type=int, default=5, help="K")
    p.add_argument("--batch-size", type=int, default=32, help="B")
    p.add_argument("--examples", type=int, default=64, help="examples per client")
    p.add_argument("--num-classes", type=int, default=62)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--rho", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="CPU devices JAX creates (default: the usable cores); ignored when XLA_FLAGS "
        "sets --xla_force_host_platform_device_count",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        help="JAX variants as conv:strategy:unroll[:noynn][:dD] (conv flax|custom; strategy "
        "vmap|sequential|chunkedC; unroll 1|T; dD: clients split over D devices, dall: every "
        "device), timed at N < --large-n",
    )
    p.add_argument(
        "--large-n",
        type=int,
        default=100,
        help="at N >= this, time only --large-variants (the slow ones would dominate the run)",
    )
    p.add_argument(
        "--large-variants",
        nargs="+",
        default=list(DEFAULT_LARGE_VARIANTS),
        help="JAX variants timed at N >= --large-n",
    )
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop")
    p.add_argument(
        "--torch-threads",
        type=int,
        nargs="+",
        default=[2, 1],
        help="one torch loop per value (only the first at N >= --large-n); the first is the "
        "reference of the 'vs torch' ratio",
    )
    p.add_argument(
        "--torch-device", default="cpu", help="where the PyTorch loops run (cuda on a GPU)"
    )
    p.add_argument("--no-peak", action="store_true", help="skip the 2048^2 matmul peak")
    p.add_argument("--out", default="benchmarks/results/cnn_throughput_cpu.json")
    args = p.parse_args(argv)
    if args.cpu_devices < 1:
        p.error(f"--cpu-devices must be >= 1, got {args.cpu_devices}")
    for v in args.variants + args.large_variants:
        try:
            parse_variant(v)
        except ValueError as e:
            p.error(str(e))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    requested = execution.use_cpu_cores(args.cpu_devices)
    info = machine_info(requested)
    log_machine(info)
    if not args.no_torch and info["torch"] is None:
        log("PyTorch is not installed; use --no-torch to skip it.")
        return 2
    small_n = [n for n in args.clients if n < args.large_n]
    large_n = [n for n in args.clients if n >= args.large_n]
    try:
        available = info["jax_device_count"]
        variants = resolve_variants(args.variants, small_n, available) if small_n else []
        large_variants = (
            resolve_variants(args.large_variants, large_n, available) if large_n else []
        )
    except ValueError as e:
        log(f"error: {e}")
        return 2
    k, b, c = args.local_steps, args.batch_size, args.num_classes
    log(
        f"workload: DFedSAM, EMNIST CNN ({num_params(c)} params, "
        f"{forward_flops_per_example(c) / 1e6:.1f} MFLOP/example forward), K={k}, B={b}, "
        f"ring gossip; N in {args.clients}"
    )

    peaks, peaks_no_ynn = [], []

    def measure_peaks(label: str) -> None:
        peaks.append(matmul_peak())
        peaks_no_ynn.append(matmul_peak(compiler_options=NO_YNN))
        log(
            f"{label}dense fp32 matmul (jitted 2048^2, one device): "
            f"{peaks[-1]['gflops']:.1f} GFLOP/s (without YNNPACK: {peaks_no_ynn[-1]['gflops']:.1f})"
        )

    if not args.no_peak:
        measure_peaks("")

    rows, per_n = [], {}
    t_start = time.perf_counter()
    for n in args.clients:
        data = random_clients(n, args.examples, c, args.seed)
        runners = [
            make_jax_runner(data, args, n, v)
            for v in (large_variants if n >= args.large_n else variants)
        ]
        if not args.no_torch:
            threads = args.torch_threads if n < args.large_n else args.torch_threads[:1]
            runners.extend(make_torch_runner(data, args, n, t) for t in threads)
        log(
            f"\nN={n}: timing {len(runners)} implementations, 1 warm-up + {args.rounds} rounds "
            "each, interleaved"
        )
        load_before = os.getloadavg()
        res = run_interleaved(runners, args.rounds)
        load_after = os.getloadavg()
        flops = train_flops(n, k, b, c)
        reference = f"torch-loop-{args.torch_threads[0]}t"
        torch_s = res.get(reference, {}).get("median_s")
        best_torch_s = min(
            (r["median_s"] for r in res.values() if r["kind"] == "torch"), default=None
        )
        for row in result_rows(res, n, k, flops, torch_s):
            row["ratio_vs_best_torch"] = (
                best_torch_s / row["median_s_per_round"] if best_torch_s else None
            )
            rows.append(row)
        per_n[str(n)] = {
            "train_gflop_per_round": flops / 1e9,
            "rounds": args.rounds,
            "reference": reference,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        }
        if not args.no_peak:  # Again after each N: the machine is shared.
            measure_peaks("  now: ")
        del data, runners

    log_table(
        rows,
        [
            Column("N", ">5", lambda r: str(r["clients"])),
            Column("implementation", "<34", lambda r: r["implementation"]),
            Column("s/round", ">9", lambda r: f"{r['median_s_per_round']:.3f}"),
            Column("client-steps/s", ">15", lambda r: f"{r['client_steps_per_s']:.1f}"),
            Column("vs torch", ">9", lambda r: ratio_text(r["ratio_vs_torch"])),
            Column("vs best", ">8", lambda r: ratio_text(r["ratio_vs_best_torch"])),
            Column("GFLOP/s", ">8", lambda r: f"{r['train_gflops_per_s']:.1f}"),
        ],
    )
    log(
        f"('vs torch': against torch-loop-{args.torch_threads[0]}t; 'vs best': against the "
        "fastest torch loop of that N)"
    )
    peak = None
    if peaks:
        peak = {
            "n": peaks[0]["n"],
            "gflops_each": [p["gflops"] for p in peaks],
            "gflops": float(np.median([p["gflops"] for p in peaks])),
            "gflops_without_ynnpack_each": [p["gflops"] for p in peaks_no_ynn],
            "gflops_without_ynnpack": float(np.median([p["gflops"] for p in peaks_no_ynn])),
        }
        log(
            f"(GFLOP/s: local steps only, {3 * 2 * forward_flops_per_example(c) / 1e6:.0f} MFLOP "
            f"per example per SAM step; 2048^2 matmul {peak['gflops']:.0f} GFLOP/s, without "
            f"YNNPACK {peak['gflops_without_ynnpack']:.0f}, medians of {len(peaks)})"
        )
    target = best_jax_target(rows, args.clients, 1.0) if not args.no_torch else {}
    log(f"total benchmark time {time.perf_counter() - t_start:.0f} s")

    result = {
        "benchmark": "dfedsam_cnn_round_throughput",
        "config": {
            "clients": args.clients,
            "rounds": args.rounds,
            "local_steps": k,
            "batch_size": b,
            "examples_per_client": args.examples,
            "num_classes": c,
            "lr": args.lr,
            "rho": args.rho,
            "cpu_devices": args.cpu_devices,
            "variants": args.variants,
            "large_n": args.large_n,
            "large_variants": args.large_variants,
            "model": "EmnistCNN: conv5x5-32, pool2, conv5x5-64, pool2, dense 512, dense C",
            "params": num_params(c),
            "forward_mflop_per_example": forward_flops_per_example(c) / 1e6,
            "dataset": "random normal 28x28x1 images, uniform random labels (stack_clients)",
            "topology": "ring, one gossip step, dense mixing matrix",
            "torch_threads": args.torch_threads,
            "torch_device": args.torch_device,
            "command": command_line(argv),
        },
        "machine": info,
        "matmul_peak": peak,
        "results": rows,
        "per_clients": per_n,
        "target_parity_with_torch": target,
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
