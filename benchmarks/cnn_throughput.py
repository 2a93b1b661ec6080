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

* ``jax-<conv>-<strategy>[-unroll][-noynn]``: one jitted function = ``sample_batches`` for all
  clients + ``dfedsam(...).round`` with a dense ring mixing matrix. ``conv`` is the
  ``EmnistCNN(conv=...)`` implementation (``flax``: ``nn.Conv`` and ``nn.max_pool``;
  ``custom``: :mod:`fedjax_lab.models.conv`), ``strategy`` the client execution (``vmap``,
  ``sequential``, ``chunked<C>``), ``-unroll`` means ``unroll=True`` for the K local steps and
  ``-noynn`` compiles the round with the XLA:CPU option that keeps convolutions and dots off
  YNNPACK. Variants are given as ``conv:strategy:unroll[:noynn]``, e.g. ``custom:chunked4:1``
  or ``flax:vmap:T:noynn``.
* ``torch-loop-<T>t``: one ``nn.Sequential`` CNN, ``load_state_dict`` per client from a stored
  per-client state, K SAM steps with an SGD optimizer, state saved back, then ring gossip of
  the per-client flat parameter vectors; ``torch.set_num_threads(T)`` for each T of
  ``--torch-threads`` (the first one is the reference of the "vs torch" ratio).

Metrics: client-steps per second = N * K / (median seconds per round), the ratio to the torch
loop, and achieved GFLOP/s of the local steps. FLOPs per example of one forward pass:
``2 * H * W * kh * kw * C_in * C_out`` per convolution (at its output size) plus
``2 * d_in * d_out`` per Dense layer; x3 for forward + backward, x2 for the two gradients of a
SAM step. (The first convolution's input gradient is counted though nobody computes it.)
The dense fp32 matmul peak (jitted 2048^2) is measured in the same run.

Example::

  python benchmarks/cnn_throughput.py --clients 20 100 --local-steps 5 --batch-size 32 --rounds 3
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from throughput import Runner
from throughput import log
from throughput import machine_info
from throughput import median_time
from throughput import run_interleaved

from fedjax_lab.algorithms import dfedsam
from fedjax_lab.data import sample_batches
from fedjax_lab.data import stack_clients
from fedjax_lab.models import EmnistCNN
from fedjax_lab.objectives import cross_entropy_loss
from fedjax_lab.topology import ring

IMAGE = (28, 28, 1)
CONVS = ((5, 1, 32), (5, 32, 64))  # (kernel, C_in, C_out), SAME, each followed by a 2x2 pool
HIDDEN = 512
# XLA:CPU compiler option for the ``:noynn`` variants: no convolution or dot is handed to
# YNNPACK (XLA's Eigen kernels run them instead).
NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}

# The default run (about 8 minutes on 2 cores): the fastest flax formulation as the baseline
# and the custom-VJP CNN under vmap and sequential execution at N = 20; the two fastest
# (sequential, with and without unrolling) at N = 100.
DEFAULT_VARIANTS = (
    "flax:vmap:T",
    "custom:vmap:T",
    "custom:sequential:1",
    "custom:sequential:T",
)
DEFAULT_LARGE_VARIANTS = ("custom:sequential:1", "custom:sequential:T")


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


def matmul_peak(n: int = 2048, repeats: int = 10, no_ynn: bool = False) -> dict[str, float]:
    """Achieved fp32 FLOP/s of one jitted ``n x n @ n x n`` matmul (XLA:CPU).

    With ``no_ynn`` the matmul is compiled without YNNPACK (XLA's Eigen kernel instead).
    """
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul, compiler_options=NO_YNN if no_ynn else None)
    jax.block_until_ready(f(a, b))
    seconds = median_time(lambda: jax.block_until_ready(f(a, b)), repeats)
    return {"n": n, "seconds": seconds, "gflops": 2 * n**3 / seconds / 1e9}


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


def parse_variant(spec: str) -> tuple[str, str, int | None, bool, bool]:
    """``conv:strategy:unroll[:noynn]`` -> (conv, strategy, chunk_size, unroll, no_ynn)."""
    parts = spec.split(":")
    no_ynn = len(parts) == 4 and parts[3] == "noynn"
    if no_ynn:
        parts = parts[:3]
    if len(parts) != 3:
        raise ValueError(
            f"Bad variant {spec!r}; expected conv:strategy:unroll[:noynn], e.g. custom:vmap:T."
        )
    conv, strategy, unroll = parts
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
    return conv, strategy, chunk, unroll == "T", no_ynn


def variant_name(spec: str) -> str:
    conv, strategy, chunk, unroll, no_ynn = parse_variant(spec)
    s = f"chunked{chunk}" if strategy == "chunked" else strategy
    return f"jax-{conv}-{s}" + ("-unroll" if unroll else "") + ("-noynn" if no_ynn else "")


def make_jax_runner(data, args, n: int, spec: str) -> Runner:
    conv, strategy, chunk, unroll, no_ynn = parse_variant(spec)
    model = EmnistCNN(num_classes=args.num_classes, conv=conv)
    params = model.init(jax.random.key(args.seed), jnp.zeros((1, *IMAGE), jnp.float32))
    kwargs: dict[str, Any] = {"strategy": strategy, "unroll": True if unroll else 1}
    if chunk is not None:
        kwargs["chunk_size"] = chunk
    alg = dfedsam(
        cross_entropy_loss(model.apply),
        learning_rate=args.lr,
        rho=args.rho,
        num_clients=n,
        **kwargs,
    )
    k, b = args.local_steps, args.batch_size
    root = jax.random.key(args.seed + 1)

    @functools.partial(jax.jit, compiler_options=NO_YNN if no_ynn else None)
    def round_with_sampling(state, mixing, data):
        key = jax.random.fold_in(root, state.round)
        batches = sample_batches(data, alg.cohort(key), jax.random.fold_in(key, 7), k, b)
        return alg.round(state, mixing, batches, key)

    holder = {"state": alg.init(params)}
    mixing = jnp.asarray(ring(n).matrix(0))

    def step():
        state, metrics = round_with_sampling(holder["state"], mixing, data)
        jax.block_until_ready((state, metrics))
        holder["state"] = state

    return Runner(variant_name(spec), "jax", step)


def make_torch_runner(data, args, n: int, threads: int) -> Runner:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    k_steps, bsz, rho = args.local_steps, args.batch_size, args.rho

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
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=args.lr)
    criterion = nn.CrossEntropyLoss()

    # Per-client data in NCHW and per-client model states (all start from one model).
    x_all = np.ascontiguousarray(np.asarray(data.x).transpose(0, 1, 4, 2, 3))
    y_all = np.asarray(data.y).astype(np.int64)
    counts = np.asarray(data.num_examples)
    xs = [torch.from_numpy(x_all[i, : counts[i]].copy()) for i in range(n)]
    ys = [torch.from_numpy(y_all[i, : counts[i]].copy()) for i in range(n)]
    start = {name: v.detach().clone() for name, v in model.state_dict().items()}
    states = [{name: v.clone() for name, v in start.items()} for _ in range(n)]
    names = list(start)
    shapes = [start[name].shape for name in names]
    numels = [start[name].numel() for name in names]

    def sam_step(xb, yb):
        optimizer.zero_grad()
        criterion(model(xb), yb).backward()
        with torch.no_grad():
            grad_norm = torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)
            scale = rho / (grad_norm + 1e-12)
            perturbations = []
            for p in params:
                e = p.grad * scale
                p.add_(e)
                perturbations.append(e)
        optimizer.zero_grad()
        criterion(model(xb), yb).backward()
        with torch.no_grad():
            for p, e in zip(params, perturbations, strict=True):
                p.sub_(e)
        optimizer.step()

    def step():
        torch.set_num_threads(threads)
        for i in range(n):
            model.load_state_dict(states[i])
            m = xs[i].shape[0]
            for _ in range(k_steps):
                if m >= bsz:
                    idx = torch.randperm(m, generator=gen)[:bsz]
                else:
                    idx = torch.randint(m, (bsz,), generator=gen)
                sam_step(xs[i][idx], ys[i][idx])
            states[i] = {name: v.detach().clone() for name, v in model.state_dict().items()}
        with torch.no_grad():  # Ring gossip of the flat per-client parameter vectors.
            flat_states = torch.stack(
                [torch.cat([s[nm].reshape(-1) for nm in names]) for s in states]
            )
            mixed = (
                torch.roll(flat_states, 1, 0) + flat_states + torch.roll(flat_states, -1, 0)
            ) / 3
            for i in range(n):
                pieces = torch.split(mixed[i], numels)
                states[i] = {nm: p.view(s) for nm, p, s in zip(names, pieces, shapes, strict=True)}

    return Runner(f"torch-loop-{threads}t", "torch", step)


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
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        help="JAX variants as conv:strategy:unroll[:noynn] (conv flax|custom; strategy vmap|"
        "sequential|chunkedC; unroll 1|T), timed at N < --large-n",
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
    p.add_argument("--no-peak", action="store_true", help="skip the 2048^2 matmul peak")
    p.add_argument("--out", default="benchmarks/results/cnn_throughput_cpu.json")
    args = p.parse_args(argv)
    for v in args.variants + args.large_variants:
        try:
            parse_variant(v)
        except ValueError as e:
            p.error(str(e))
    return args


def main(argv=None) -> int:
    import json

    args = parse_args(argv)
    info = machine_info()
    log(
        f"machine: {info['cpu_model']}, {info['cpu_count']} CPUs, jax {info['jax']} "
        f"({info['jax_backend']}), torch {info['torch']}"
    )
    if not args.no_torch and info["torch"] is None:
        log("PyTorch is not installed; use --no-torch to skip it.")
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
        peaks_no_ynn.append(matmul_peak(no_ynn=True))
        log(
            f"{label}dense fp32 matmul (jitted 2048^2): {peaks[-1]['gflops']:.1f} GFLOP/s "
            f"(without YNNPACK: {peaks_no_ynn[-1]['gflops']:.1f})"
        )

    if not args.no_peak:
        measure_peaks("")

    rows, per_n = [], {}
    t_start = time.perf_counter()
    for n in args.clients:
        variants = args.large_variants if n >= args.large_n else args.variants
        data = random_clients(n, args.examples, c, args.seed)
        runners = [make_jax_runner(data, args, n, v) for v in variants]
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
        for name, r in res.items():
            rows.append(
                {
                    "clients": n,
                    "implementation": name,
                    "median_s_per_round": r["median_s"],
                    "client_steps_per_s": n * k / r["median_s"],
                    "ratio_vs_torch": (torch_s / r["median_s"]) if torch_s else None,
                    "ratio_vs_best_torch": (best_torch_s / r["median_s"]) if best_torch_s else None,
                    "train_gflops_per_s": flops / r["median_s"] / 1e9,
                    "first_call_s": r["first_call_s"],
                    "compile_s_est": r["compile_s_est"] if r["kind"] == "jax" else None,
                    "times_s": r["times_s"],
                }
            )
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

    log("\n" + "=" * 100)
    header = (
        f"{'N':>5}  {'implementation':<34} {'s/round':>9} {'client-steps/s':>15} "
        f"{'vs torch':>9} {'vs best':>8} {'GFLOP/s':>8}"
    )
    log(header)
    log("-" * len(header))

    def fmt(ratio):
        return f"{ratio:.2f}x" if ratio else "-"

    for row in rows:
        log(
            f"{row['clients']:>5}  {row['implementation']:<34} {row['median_s_per_round']:9.3f} "
            f"{row['client_steps_per_s']:15.1f} {fmt(row['ratio_vs_torch']):>9} "
            f"{fmt(row['ratio_vs_best_torch']):>8} {row['train_gflops_per_s']:8.1f}"
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
    target = {}
    if not args.no_torch:
        for n in args.clients:
            best = max(
                (r for r in rows if r["clients"] == n and r["implementation"].startswith("jax")),
                key=lambda r: r["client_steps_per_s"],
                default=None,
            )
            if best and best["ratio_vs_torch"]:
                met = best["ratio_vs_torch"] >= 1.0
                target[str(n)] = {
                    "best_jax": best["implementation"],
                    "ratio": best["ratio_vs_torch"],
                    "met": met,
                }
                log(
                    f"target JAX >= torch at N={n}: best {best['implementation']} "
                    f"{best['ratio_vs_torch']:.2f}x -> {'MET' if met else 'MISSED'}"
                )
    log(f"total benchmark time {time.perf_counter() - t_start:.0f} s")

    try:
        info["loadavg_at_end"] = os.getloadavg()
    except OSError:
        pass
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
            "variants": args.variants,
            "large_n": args.large_n,
            "large_variants": args.large_variants,
            "model": "EmnistCNN: conv5x5-32, pool2, conv5x5-64, pool2, dense 512, dense C",
            "params": num_params(c),
            "forward_mflop_per_example": forward_flops_per_example(c) / 1e6,
            "dataset": "random normal 28x28x1 images, uniform random labels (stack_clients)",
            "topology": "ring, one gossip step, dense mixing matrix",
            "torch_threads": args.torch_threads,
            "command": " ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])),
        },
        "machine": info,
        "matmul_peak": peak,
        "results": rows,
        "per_clients": per_n,
        "target_parity_with_torch": target,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
