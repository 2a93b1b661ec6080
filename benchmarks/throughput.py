#!/usr/bin/env python3
"""Throughput of one DFedSAM round: fedjax_lab (JAX) against a plain PyTorch per-client loop.

Workload (one round): every one of N clients runs K SAM steps (radius rho, then an SGD step
with learning rate lr) on batches of B of its own examples, then one ring gossip step
``x_i <- (x_{i-1} + x_i + x_{i+1}) / 3``. Model: MLP 60-200-200-10 on FedProx synthetic(1, 1).

Implementations, all timed in the same process and interleaved round by round (so a load
spike from another process hits all of them alike):

* ``jax-<strategy>-<mixing>``: one jitted function = ``sample_batches`` for all clients +
  ``dfedsam(...).round``; strategy ``vmap`` / ``sequential`` / ``chunked<C>`` (client
  execution), mixing ``dense`` (``[N, N]`` W) or ``sparse`` (``to_sparse(W)``).
* ``torch-loop``: one ``nn.Sequential`` model, ``load_state_dict`` per client from a stored
  per-client state, K SAM steps with an SGD optimizer, state saved back, then ring gossip of
  the per-client flat parameter vectors.

Metric: client-steps per second = N * K / (median seconds per round).

``--breakdown`` additionally times the pieces of the JAX round (batch sampling, local
training per strategy, gossip, one client alone, a pooled-batch matmul bound) to locate
the bottleneck.

Example::

  python benchmarks/throughput.py --clients 100 1000 --rounds 5 --local-steps 10 --batch-size 32
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import fedjax_lab
from fedjax_lab import clients as clients_lib
from fedjax_lab import gossip as gossip_lib
from fedjax_lab import local as local_lib
from fedjax_lab.algorithms import dfedsam
from fedjax_lab.data import make_federated_dataset, sample_batches
from fedjax_lab.models import MLP
from fedjax_lab.objectives import cross_entropy_loss
from fedjax_lab.topology import ring

HIDDEN = (200, 200)
NUM_CLASSES = 10
INPUT_DIM = 60


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- #
# Machine info and reference numbers.
# --------------------------------------------------------------------------- #


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    info = {
        "date": datetime.date.today().isoformat(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", "?"),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "fedjax_lab": fedjax_lab.__version__,
        "numpy": np.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(n: int = 2048, repeats: int = 10) -> dict[str, float]:
    """Achieved fp32 FLOP/s of one jitted ``n x n @ n x n`` matmul (XLA:CPU)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    jax.block_until_ready(f(a, b))
    seconds = median_time(lambda: jax.block_until_ready(f(a, b)), repeats)
    return {"n": n, "seconds": seconds, "gflops": 2 * n**3 / seconds / 1e9}


def num_params() -> int:
    sizes = (INPUT_DIM, *HIDDEN, NUM_CLASSES)
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def train_flops(n: int, k: int, b: int) -> float:
    """~6 * params * examples per gradient evaluation, 2 evaluations per SAM step."""
    return 6.0 * num_params() * b * 2 * k * n


# --------------------------------------------------------------------------- #
# Runners: each does one round per call and blocks until it is done.
# --------------------------------------------------------------------------- #


class Runner(NamedTuple):
    name: str
    kind: str  # "jax" or "torch"
    step: Callable[[], None]


def jax_setup(num_clients: int, seed: int):
    model = MLP(num_classes=NUM_CLASSES, hidden_sizes=HIDDEN)
    params = model.init(jax.random.key(seed), jnp.zeros((1, INPUT_DIM), jnp.float32))
    return model, params, cross_entropy_loss(model.apply)


def mixing_for(num_clients: int, kind: str):
    w = ring(num_clients).matrix(0)
    return gossip_lib.to_sparse(w) if kind == "sparse" else jnp.asarray(w)


def strategy_kwargs(strategy: str, chunk_size: int) -> dict[str, Any]:
    if strategy == "chunked":
        return {"strategy": "chunked", "chunk_size": chunk_size}
    return {"strategy": strategy}


def variant_name(strategy: str, mixing: str, chunk_size: int, unroll: Any) -> str:
    s = f"chunked{chunk_size}" if strategy == "chunked" else strategy
    u = "" if unroll in (1, False) else f"-unroll{unroll}"
    return f"jax-{s}{u}-{mixing}"


def make_jax_runner(ds, args, num_clients: int, strategy: str, mixing_kind: str) -> Runner:
    _, params, loss_fn = jax_setup(num_clients, args.seed)
    alg = dfedsam(
        loss_fn,
        learning_rate=args.lr,
        rho=args.rho,
        num_clients=num_clients,
        unroll=args.unroll,
        **strategy_kwargs(strategy, args.chunk_size),
    )
    k, b = args.local_steps, args.batch_size
    root = jax.random.key(args.seed + 1)

    @jax.jit
    def round_with_sampling(state, mixing, data):
        key = jax.random.fold_in(root, state.round)
        ids = alg.cohort(key)
        batches = sample_batches(data, ids, jax.random.fold_in(key, 7), k, b)
        return alg.round(state, mixing, batches, key)

    holder = {"state": alg.init(params)}
    mixing = mixing_for(num_clients, mixing_kind)
    data = ds.train

    def step():
        state, metrics = round_with_sampling(holder["state"], mixing, data)
        jax.block_until_ready((state, metrics))
        holder["state"] = state

    return Runner(variant_name(strategy, mixing_kind, args.chunk_size, args.unroll), "jax", step)


def make_torch_runner(ds, args, num_clients: int) -> Runner:
    import torch
    from torch import nn

    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    k_steps, bsz, rho = args.local_steps, args.batch_size, args.rho

    sizes = (INPUT_DIM, *HIDDEN, NUM_CLASSES)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=args.lr)
    criterion = nn.CrossEntropyLoss()

    # Per-client data (unpadded) and per-client model states (all start from one model).
    x_all, y_all = np.asarray(ds.train.x), np.asarray(ds.train.y)
    counts = np.asarray(ds.train.num_examples)
    xs = [torch.from_numpy(x_all[i, : counts[i]].copy()) for i in range(num_clients)]
    ys = [torch.from_numpy(y_all[i, : counts[i]].astype(np.int64)) for i in range(num_clients)]
    start = {name: v.detach().clone() for name, v in model.state_dict().items()}
    states = [{name: v.clone() for name, v in start.items()} for _ in range(num_clients)]
    names = list(start)
    shapes = [start[n].shape for n in names]
    numels = [start[n].numel() for n in names]

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
            for p, e in zip(params, perturbations):
                p.sub_(e)
        optimizer.step()

    def step():
        for i in range(num_clients):
            model.load_state_dict(states[i])
            n = xs[i].shape[0]
            for _ in range(k_steps):
                if n >= bsz:
                    idx = torch.randperm(n, generator=gen)[:bsz]
                else:
                    idx = torch.randint(n, (bsz,), generator=gen)
                sam_step(xs[i][idx], ys[i][idx])
            states[i] = {name: v.detach().clone() for name, v in model.state_dict().items()}
        # Ring gossip of the flat per-client parameter vectors.
        with torch.no_grad():
            flat = torch.stack([torch.cat([s[n].reshape(-1) for n in names]) for s in states])
            mixed = (torch.roll(flat, 1, 0) + flat + torch.roll(flat, -1, 0)) / 3.0
            for i in range(num_clients):
                pieces = torch.split(mixed[i], numels)
                states[i] = {n: p.view(s) for n, p, s in zip(names, pieces, shapes)}

    return Runner("torch-loop", "torch", step)


# --------------------------------------------------------------------------- #
# Timing.
# --------------------------------------------------------------------------- #


def run_interleaved(runners: list[Runner], rounds: int) -> dict[str, dict[str, Any]]:
    """Warm-up (compile) call per runner, then ``rounds`` timed rounds, interleaved."""
    results: dict[str, dict[str, Any]] = {}
    for r in runners:
        t0 = time.perf_counter()
        r.step()
        first = time.perf_counter() - t0
        results[r.name] = {"first_call_s": first, "times_s": []}
        log(f"    warm-up {r.name:<28s} {first:8.3f} s")
    for i in range(rounds):
        line = []
        for r in runners:
            t0 = time.perf_counter()
            r.step()
            dt = time.perf_counter() - t0
            results[r.name]["times_s"].append(dt)
            line.append(f"{r.name}={dt:.3f}")
        log(f"    round {i + 1}/{rounds}: " + "  ".join(line))
    for r in runners:
        res = results[r.name]
        res["kind"] = r.kind
        res["median_s"] = statistics.median(res["times_s"])
        # For JAX the first call is compile + one round.
        res["compile_s_est"] = max(0.0, res["first_call_s"] - res["median_s"])
    return results


# --------------------------------------------------------------------------- #
# Breakdown of the JAX round.
# --------------------------------------------------------------------------- #


def breakdown(ds, args, num_clients: int, repeats: int) -> dict[str, float]:
    """Median seconds of the pieces of one JAX round (each jitted on its own)."""
    import optax

    from fedjax_lab.transforms import sam

    _, params, loss_fn = jax_setup(num_clients, args.seed)
    k, b = args.local_steps, args.batch_size
    ids = jnp.arange(num_clients, dtype=jnp.int32)
    key = jax.random.key(3)
    out: dict[str, float] = {}

    def timed(name, fn, *a):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*a))
        compile_s = time.perf_counter() - t0
        out[name] = median_time(lambda: jax.block_until_ready(fn(*a)), repeats)
        log(f"    {name:<44s} {out[name]:8.4f} s   (first call {compile_s:.2f} s)")

    sampler = jax.jit(lambda data, kk: sample_batches(data, ids, kk, k, b))
    timed("sample_batches", sampler, ds.train, key)
    batches = sampler(ds.train, key)
    stacked = clients_lib.broadcast_to_clients(params, num_clients)
    stacked = jax.tree.map(lambda x: x + 0.0, stacked)  # materialize

    optimizer = optax.chain(sam(args.rho), optax.sgd(args.lr))
    keys = clients_lib.client_keys(key, ids)

    def train_fn(strategy):
        def client_update(p, bt, kk):
            return local_lib.local_train(optimizer, loss_fn, p, bt, kk, unroll=args.unroll).params

        kw = strategy_kwargs(strategy, args.chunk_size)
        return jax.jit(lambda p, bt, kk: clients_lib.map_clients(client_update, p, bt, kk, **kw))

    for strategy in args.breakdown_strategies:
        label = f"chunked{args.chunk_size}" if strategy == "chunked" else strategy
        timed(f"local training only ({label})", train_fn(strategy), stacked, batches, keys)

    gossip_fn = jax.jit(gossip_lib.gossip)
    timed("gossip dense (einsum)", gossip_fn, mixing_for(num_clients, "dense"), stacked)
    timed("gossip sparse (gather)", gossip_fn, mixing_for(num_clients, "sparse"), stacked)

    @jax.jit
    def gossip_roll(tree):  # what a circulant-aware gossip could cost (ring only)
        return jax.tree.map(lambda x: (jnp.roll(x, 1, 0) + x + jnp.roll(x, -1, 0)) / 3.0, tree)

    timed("gossip ring via roll (not in library)", gossip_roll, stacked)

    @jax.jit
    def gossip_per_slot(m, tree):  # SparseMixing applied one neighbour slot at a time
        def leaf(x):
            out = jnp.zeros_like(x)
            for d in range(m.indices.shape[1]):
                w = m.weights[:, d].reshape((-1,) + (1,) * (x.ndim - 1))
                out = out + w * jnp.take(x, m.indices[:, d], axis=0)
            return out

        return jax.tree.map(leaf, tree)

    timed(
        "gossip sparse, per-slot take (not in lib.)",
        gossip_per_slot,
        mixing_for(num_clients, "sparse"),
        stacked,
    )

    # One client's K SAM steps alone, times N = a serial per-client lower bound.
    one = jax.jit(lambda p, bt, kk: local_lib.local_train(optimizer, loss_fn, p, bt, kk).params)
    first = jax.tree.map(lambda x: x[0], batches)
    timed("one client, K SAM steps (x N below)", one, params, first, key)
    out["one client x N"] = out["one client, K SAM steps (x N below)"] * num_clients
    log(f"    {'one client x N':<44s} {out['one client x N']:8.4f} s")

    # Same FLOPs with shared weights: one pooled batch of N*B examples per gradient
    # evaluation, i.e. the GEMM-shaped upper bound for the local steps.
    pooled = jax.tree.map(
        lambda x: jnp.swapaxes(x, 0, 1).reshape((k, num_clients * b) + x.shape[3:]), batches
    )
    timed("pooled batch N*B, K SAM steps (bound)", one, params, pooled, key)
    return out


# --------------------------------------------------------------------------- #
# Main.
# --------------------------------------------------------------------------- #


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clients", type=int, nargs="+", default=[100, 1000], help="values of N")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per implementation")
    p.add_argument(
        "--large-rounds",
        type=int,
        default=3,
        help="timed rounds at N >= --large-n (slow rounds; fewer repeats)",
    )
    p.add_argument("--large-n", type=int, default=1000)
    p.add_argument("--local-steps", type=int, default=10, help="K")
    p.add_argument("--batch-size", type=int, default=32, help="B")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--rho", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--variants",
        nargs="+",
        default=[
            "vmap:dense",
            "vmap:sparse",
            "sequential:dense",
            "sequential:sparse",
            "chunked:dense",
            "chunked:sparse",
        ],
        help="JAX variants as strategy:mixing (strategy vmap|sequential|chunked, mixing dense|sparse)",
    )
    p.add_argument("--chunk-size", type=int, default=10, help="clients per chunk for 'chunked'")
    p.add_argument("--unroll", type=int, default=1, help="lax.scan unroll of the K local steps")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--breakdown", action="store_true", help="also time the pieces of the JAX round")
    p.add_argument("--breakdown-strategies", nargs="+", default=["vmap", "sequential", "chunked"])
    p.add_argument("--no-peak", action="store_true", help="skip the 2048^2 matmul peak")
    p.add_argument("--out", default="benchmarks/results/throughput_cpu.json")
    args = p.parse_args(argv)
    for v in args.variants:
        s, _, m = v.partition(":")
        if s not in ("vmap", "sequential", "chunked") or m not in ("dense", "sparse"):
            p.error(f"bad variant {v!r}; expected strategy:mixing, e.g. vmap:sparse")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    info = machine_info()
    log(
        f"machine: {info['cpu_model']}, {info['cpu_count']} CPUs, jax {info['jax']} "
        f"({info['jax_backend']}), torch {info['torch']}"
    )
    if not args.no_torch and info["torch"] is None:
        log("PyTorch is not installed (pip install torch==2.13.0); use --no-torch to skip it.")
        return 2
    k, b = args.local_steps, args.batch_size
    log(
        f"workload: DFedSAM, MLP 60-{'-'.join(map(str, HIDDEN))}-10 ({num_params()} params), "
        f"K={k}, B={b}, ring gossip; N in {args.clients}"
    )

    peak = None
    if not args.no_peak:
        peak = matmul_peak()
        log(f"dense fp32 matmul peak (jitted 2048^2): {peak['gflops']:.1f} GFLOP/s")

    rows, per_n = [], {}
    t_start = time.perf_counter()
    for n in args.clients:
        rounds = args.large_rounds if n >= args.large_n else args.rounds
        log(f"\nN={n}: building data ...")
        t0 = time.perf_counter()
        ds = make_federated_dataset("synthetic", n, seed=args.seed)
        counts = np.asarray(ds.train.num_examples)
        log(
            f"  {time.perf_counter() - t0:.1f} s; train examples per client "
            f"min {counts.min()} median {int(np.median(counts))} max {counts.max()} "
            f"(padded to {ds.train.x.shape[1]}); {int((counts < b).sum())} clients with < B"
        )
        runners = []
        for v in args.variants:
            s, _, m = v.partition(":")
            runners.append(make_jax_runner(ds, args, n, s, m))
        if not args.no_torch:
            runners.append(make_torch_runner(ds, args, n))
        log(
            f"  timing {len(runners)} implementations, 1 warm-up + {rounds} rounds each, interleaved"
        )
        res = run_interleaved(runners, rounds)
        flops = train_flops(n, k, b)
        torch_s = res.get("torch-loop", {}).get("median_s")
        for name, r in res.items():
            row = {
                "clients": n,
                "implementation": name,
                "median_s_per_round": r["median_s"],
                "client_steps_per_s": n * k / r["median_s"],
                "ratio_vs_torch": (torch_s / r["median_s"]) if torch_s else None,
                "train_gflops_per_s": flops / r["median_s"] / 1e9,
                "first_call_s": r["first_call_s"],
                "compile_s_est": r["compile_s_est"] if r["kind"] == "jax" else None,
                "times_s": r["times_s"],
            }
            rows.append(row)
        entry = {"train_gflop_per_round": flops / 1e9, "rounds": rounds}
        if args.breakdown:
            log("  breakdown of the JAX round (median s):")
            entry["breakdown_s"] = breakdown(ds, args, n, repeats=rounds)
        per_n[str(n)] = entry
        del ds, runners

    # Table.
    log("\n" + "=" * 100)
    header = (
        f"{'N':>5}  {'implementation':<28} {'s/round':>9} {'client-steps/s':>15} "
        f"{'vs torch':>9} {'GFLOP/s':>8}"
    )
    log(header)
    log("-" * len(header))
    for row in rows:
        ratio = f"{row['ratio_vs_torch']:.2f}x" if row["ratio_vs_torch"] else "-"
        log(
            f"{row['clients']:>5}  {row['implementation']:<28} {row['median_s_per_round']:9.3f} "
            f"{row['client_steps_per_s']:15.0f} {ratio:>9} {row['train_gflops_per_s']:8.1f}"
        )
    if peak:
        log(
            f"(GFLOP/s counts only the local steps: 12 * params * B per client-step; "
            f"matmul peak {peak['gflops']:.0f} GFLOP/s)"
        )
    target = {}
    if not args.no_torch:
        for n in args.clients:
            best = max(
                (r for r in rows if r["clients"] == n and r["implementation"] != "torch-loop"),
                key=lambda r: r["client_steps_per_s"],
                default=None,
            )
            if best and best["ratio_vs_torch"]:
                met = best["ratio_vs_torch"] >= 10.0
                target[str(n)] = {
                    "best_jax": best["implementation"],
                    "ratio": best["ratio_vs_torch"],
                    "met": met,
                }
                log(
                    f"target JAX >= 10x torch at N={n}: best {best['implementation']} "
                    f"{best['ratio_vs_torch']:.2f}x -> {'MET' if met else 'MISSED'}"
                )
    log(f"total benchmark time {time.perf_counter() - t_start:.0f} s")

    try:
        info["loadavg_at_end"] = os.getloadavg()
    except OSError:
        pass
    result = {
        "benchmark": "dfedsam_round_throughput",
        "config": {
            "clients": args.clients,
            "rounds": args.rounds,
            "large_rounds": args.large_rounds,
            "large_n": args.large_n,
            "local_steps": k,
            "batch_size": b,
            "lr": args.lr,
            "rho": args.rho,
            "chunk_size": args.chunk_size,
            "unroll": args.unroll,
            "model": f"MLP 60-{HIDDEN[0]}-{HIDDEN[1]}-10",
            "params": num_params(),
            "dataset": "synthetic(1,1) (FedProx), make_federated_dataset('synthetic', N, seed)",
            "topology": "ring, one gossip step",
            "command": " ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])),
        },
        "machine": info,
        "matmul_peak": peak,
        "results": rows,
        "per_clients": per_n,
        "target_10x": target,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
