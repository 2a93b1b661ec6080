#!/usr/bin/env python3
"""Throughput of one DFedSAM round: fedjax_lab (JAX) against a plain PyTorch per-client loop.

Workload (one round): every one of N clients runs K SAM steps (radius rho, then an SGD step
with learning rate lr) on batches of B of its own examples, then one ring gossip step
``x_i <- (x_{i-1} + x_i + x_{i+1}) / 3``. Model: MLP 60-200-200-10 on FedProx synthetic(1, 1).

Implementations, all timed in the same process and interleaved round by round (so a load
spike from another process hits all of them alike):

* ``jax-<strategy>-<mixing>[-d<D>]``: one jitted function = ``sample_batches`` for all
  clients + ``dfedsam(...).round(..., execution=clients.Execution(...))``; strategy ``vmap``
  / ``sequential`` / ``chunked<C>`` (client execution), mixing ``dense`` (``[N, N]`` W),
  ``sparse`` (``to_sparse(W)``) or ``circulant`` (``to_circulant(W)``, what
  ``communication.form="auto"`` picks for a ring).
  Given as ``strategy:mixing[:dD]``; the optional ``dD`` (``dall``: every device) splits the
  clients over D devices (:mod:`fedjax_lab.sharding`: state and data split, mixing
  replicated, batches sampled by a separate jitted function, then ``sharded_round``); without
  it, or with ``d1``, everything runs on the default device. N must be divisible by D.
* ``torch-loop``: one ``nn.Sequential`` model, ``load_state_dict`` per client from a stored
  per-client state, K SAM steps with an SGD optimizer, state saved back, then ring gossip of
  the per-client flat parameter vectors.

Metric: client-steps per second = N * K / (median seconds per round).

JAX devices: ``--cpu-devices D`` asks JAX for D CPU devices (default: one per usable core,
``fedjax_lab.runner.execution.use_cpu_cores``) before anything else touches JAX. One CPU device runs
a round on one core, so the ``dD`` variants are the ones that use several cores. On a GPU or
TPU machine the accelerators are the devices. The default variants are ``vmap:sparse``,
``sequential:sparse``, ``chunked:sparse``, ``sequential:sparse:dall``, ``chunked:sparse:dall``
and ``chunked:circulant:dall`` (the experiment runner's defaults on a CPU).

``--breakdown`` additionally times the pieces of the JAX round (batch sampling, local
training per strategy, gossip, one client alone, a pooled-batch matmul bound) to locate
the bottleneck (on one device).

Example::

  python benchmarks/throughput.py --clients 100 1000 --rounds 5 --local-steps 10 --batch-size 32
  python benchmarks/throughput.py --clients 100 --cpu-devices 2 --variants chunked:sparse:d2
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from types import SimpleNamespace
from typing import Any, NamedTuple

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
    median_time,
    parse_device_part,
    ratio_text,
    result_rows,
    round_step,
    run_interleaved,
    torch_loop_runner,
    write_result,
)

from fedjax_lab import clients as clients_lib
from fedjax_lab import gossip as gossip_lib
from fedjax_lab import local as local_lib
from fedjax_lab.algorithms import dfedsam
from fedjax_lab.data import make_federated_dataset, sample_batches
from fedjax_lab.models import MLP
from fedjax_lab.objectives import cross_entropy_loss
from fedjax_lab.runner import execution
from fedjax_lab.topology import ring

HIDDEN = (200, 200)
NUM_CLASSES = 10
INPUT_DIM = 60


def num_params() -> int:
    sizes = (INPUT_DIM, *HIDDEN, NUM_CLASSES)
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def train_flops(n: int, k: int, b: int) -> float:
    """~6 * params * examples per gradient evaluation, 2 evaluations per SAM step."""
    return 6.0 * num_params() * b * 2 * k * n


# --------------------------------------------------------------------------- #
# Runners: each does one round per call and blocks until it is done.
# --------------------------------------------------------------------------- #


def jax_setup(num_clients: int, seed: int):
    model = MLP(num_classes=NUM_CLASSES, hidden_sizes=HIDDEN)
    params = model.init(jax.random.key(seed), jnp.zeros((1, INPUT_DIM), jnp.float32))
    return model, params, cross_entropy_loss(model.apply)


def mixing_for(num_clients: int, kind: str):
    w = ring(num_clients).matrix(0)
    forms = {
        "dense": jnp.asarray,
        "sparse": gossip_lib.to_sparse,
        "circulant": gossip_lib.to_circulant,
    }
    return forms[kind](w)


def execution_for(strategy: str, chunk_size: int, unroll: Any = 1) -> clients_lib.Execution:
    """The client execution of a variant (``chunk_size`` is used by ``chunked`` only)."""
    chunk = chunk_size if strategy == "chunked" else None
    return clients_lib.Execution(strategy, chunk, unroll)


def variant_name(strategy: str, mixing: str, chunk_size: int, unroll: Any) -> str:
    s = f"chunked{chunk_size}" if strategy == "chunked" else strategy
    u = "" if unroll in (1, False) else f"-unroll{unroll}"
    return f"jax-{s}{u}-{mixing}"


def parse_variant(spec: str) -> tuple[str, str, int | None]:
    """``strategy:mixing[:dD]`` -> (strategy, mixing, devices); devices None means ``dall``."""
    parts = spec.split(":")
    if (
        len(parts) not in (2, 3)
        or parts[0] not in ("vmap", "sequential", "chunked")
        or parts[1] not in ("dense", "sparse", "circulant")
        or (len(parts) == 3 and not is_device_part(parts[2]))
    ):
        raise ValueError(
            f"Bad variant {spec!r}; expected strategy:mixing[:dD] (strategy vmap|sequential|"
            "chunked, mixing dense|sparse|circulant, D a device count or 'all'), e.g. "
            "chunked:sparse:d2."
        )
    devices = parse_device_part(parts[2], spec) if len(parts) == 3 else 1
    return parts[0], parts[1], devices


def resolve_variants(
    specs: list[str], clients: list[int], available: int
) -> list[tuple[str, str, int]]:
    """(strategy, mixing, devices) of every variant, with ``dall`` = ``available`` devices.

    A variant equal to an earlier one (``dall`` on a single device) is dropped.

    Raises:
      ValueError: a variant asks for more devices than ``available``, or for a device count
        that does not divide a value of N.
    """
    resolved = []
    for spec in specs:
        strategy, mixing, devices = parse_variant(spec)
        variant = (strategy, mixing, check_devices(devices, spec, available, clients))
        if variant in resolved:
            log(f"variant {spec} is the same as an earlier one on this machine; timed once")
        else:
            resolved.append(variant)
    return resolved


def make_jax_runner(
    ds,
    args,
    num_clients: int,
    strategy: str,
    mixing_kind: str,
    devices: int,
    handwritten: bool = False,
) -> Runner:
    """A DFedSAM variant: the library's ``dfedsam`` or, with ``handwritten``, the monolithic
    round of :func:`handwritten_dfedsam` (named ``hand-...``)."""
    _, params, loss_fn = jax_setup(num_clients, args.seed)
    factory = handwritten_dfedsam if handwritten else dfedsam
    alg = factory(loss_fn, learning_rate=args.lr, rho=args.rho, num_clients=num_clients)
    # The hand-written round does not unroll its local steps.
    unroll = 1 if handwritten else args.unroll
    step = round_step(
        alg,
        params,
        mixing_for(num_clients, mixing_kind),
        ds.train,
        jax.random.key(args.seed + 1),
        args.local_steps,
        args.batch_size,
        devices=devices,
        execution=execution_for(strategy, args.chunk_size, unroll),
    )
    name = variant_name(strategy, mixing_kind, args.chunk_size, unroll)
    return Runner(("hand-" if handwritten else "") + name + device_suffix(devices), "jax", step)


class _HandWrittenState(NamedTuple):
    params: Any
    round: jax.Array


def handwritten_dfedsam(loss_fn, *, learning_rate, rho, num_clients):
    """DFedSAM written as one monolithic round, with none of the library's pieces.

    The same math as ``dfedsam(...)`` (K SAM steps per client, then one gossip step), with
    the SAM step written out by hand: the reference for "the composable pieces cost nothing".
    Its ``round`` takes an ``execution`` like the library's and maps the clients with its
    strategy and chunk size (its local steps are never unrolled).
    """

    def local_sam(y, batches, key):
        del key

        def step(y, batch):
            loss, g = jax.value_and_grad(loss_fn)(y, batch)
            norm = jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(g)))
            perturbed = jax.tree.map(lambda p, d: p + rho * d / (norm + 1e-12), y, g)
            g2 = jax.grad(loss_fn)(perturbed, batch)
            return jax.tree.map(lambda p, d: p - learning_rate * d, y, g2), loss

        return jax.lax.scan(step, y, batches)

    def round_fn(state, mixing, batches, key, execution=clients_lib.VMAP):
        ids = jnp.arange(num_clients, dtype=jnp.int32)
        keys = clients_lib.client_keys(jax.random.fold_in(key, 1), ids)
        trained, losses = clients_lib.map_clients(
            local_sam,
            state.params,
            batches,
            keys,
            strategy=execution.strategy,
            chunk_size=execution.chunk_size,
        )
        params = gossip_lib.gossip(mixing, trained)
        return _HandWrittenState(params, state.round + 1), {"train_loss": jnp.mean(losses)}

    return SimpleNamespace(
        name="handwritten",
        num_clients=num_clients,
        cohort_size=num_clients,
        decentralized=True,
        init=lambda p: _HandWrittenState(
            clients_lib.broadcast_to_clients(p, num_clients), jnp.zeros((), jnp.int32)
        ),
        cohort=lambda key: jnp.arange(num_clients, dtype=jnp.int32),
        round=round_fn,
        # For sharding.sharded_round: the models carry the client axis, the counter does not.
        client_axes=lambda state: _HandWrittenState(
            jax.tree.map(lambda _: True, state.params), False
        ),
    )


def make_torch_runner(ds, args, num_clients: int) -> Runner:
    """The PyTorch per-client loop (:func:`common.torch_loop_runner`) on the same MLP."""
    import torch
    from torch import nn

    torch.manual_seed(args.seed)  # the initial model
    sizes = (INPUT_DIM, *HIDDEN, NUM_CLASSES)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    x_all, y_all = np.asarray(ds.train.x), np.asarray(ds.train.y)
    counts = np.asarray(ds.train.num_examples)
    xs = [torch.from_numpy(x_all[i, : counts[i]].copy()) for i in range(num_clients)]
    ys = [torch.from_numpy(y_all[i, : counts[i]].astype(np.int64)) for i in range(num_clients)]
    return torch_loop_runner(
        "torch-loop",
        nn.Sequential(*layers),
        xs,
        ys,
        local_steps=args.local_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        rho=args.rho,
        seed=args.seed,
        threads=args.torch_threads,
        device=args.torch_device,
    )


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

        execution = execution_for(strategy, args.chunk_size)
        return jax.jit(lambda p, bt, kk: execution.map(client_update, p, bt, kk))

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
        "--cpu-devices",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="CPU devices JAX creates (default: the usable cores); ignored when XLA_FLAGS "
        "sets --xla_force_host_platform_device_count",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=[
            "vmap:sparse",
            "sequential:sparse",
            "chunked:sparse",
            "sequential:sparse:dall",
            "chunked:sparse:dall",
            "chunked:circulant:dall",
        ],
        help="JAX variants as strategy:mixing[:dD] (strategy vmap|sequential|chunked, mixing "
        "dense|sparse|circulant, optional dD: clients split over D devices, dall: every "
        "device)",
    )
    p.add_argument("--chunk-size", type=int, default=10, help="clients per chunk for 'chunked'")
    p.add_argument("--unroll", type=int, default=1, help="lax.scan unroll of the K local steps")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop")
    p.add_argument(
        "--handwritten",
        action="store_true",
        help="also time a hand-written monolithic DFedSAM round per variant (hand-...)",
    )
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument(
        "--torch-device", default="cpu", help="where the PyTorch loop runs (cuda on a GPU)"
    )
    p.add_argument(
        "--breakdown", action="store_true", help="also time the pieces of the JAX round (1 device)"
    )
    p.add_argument("--breakdown-strategies", nargs="+", default=["vmap", "sequential", "chunked"])
    p.add_argument("--no-peak", action="store_true", help="skip the 2048^2 matmul peak")
    p.add_argument("--out", default="benchmarks/results/throughput_cpu.json")
    args = p.parse_args(argv)
    if args.cpu_devices < 1:
        p.error(f"--cpu-devices must be >= 1, got {args.cpu_devices}")
    for v in args.variants:
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
        log("PyTorch is not installed (pip install torch==2.13.0); use --no-torch to skip it.")
        return 2
    try:
        variants = resolve_variants(args.variants, args.clients, info["jax_device_count"])
    except ValueError as e:
        log(f"error: {e}")
        return 2
    k, b = args.local_steps, args.batch_size
    log(
        f"workload: DFedSAM, MLP 60-{'-'.join(map(str, HIDDEN))}-10 ({num_params()} params), "
        f"K={k}, B={b}, ring gossip; N in {args.clients}"
    )

    peak = None
    if not args.no_peak:
        peak = matmul_peak()
        log(f"dense fp32 matmul peak (jitted 2048^2, one device): {peak['gflops']:.1f} GFLOP/s")

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
        runners = [make_jax_runner(ds, args, n, *v) for v in variants]
        if args.handwritten:
            runners += [make_jax_runner(ds, args, n, *v, handwritten=True) for v in variants]
        if not args.no_torch:
            runners.append(make_torch_runner(ds, args, n))
        log(
            f"  timing {len(runners)} implementations, 1 warm-up + {rounds} rounds each, interleaved"
        )
        res = run_interleaved(runners, rounds)
        flops = train_flops(n, k, b)
        torch_s = res.get("torch-loop", {}).get("median_s")
        rows.extend(result_rows(res, n, k, flops, torch_s))
        entry = {"train_gflop_per_round": flops / 1e9, "rounds": rounds}
        if args.breakdown:
            log("  breakdown of the JAX round (median s):")
            entry["breakdown_s"] = breakdown(ds, args, n, repeats=rounds)
        per_n[str(n)] = entry
        del ds, runners

    log_table(
        rows,
        [
            Column("N", ">5", lambda r: str(r["clients"])),
            Column("implementation", "<34", lambda r: r["implementation"]),
            Column("s/round", ">9", lambda r: f"{r['median_s_per_round']:.3f}"),
            Column("client-steps/s", ">15", lambda r: f"{r['client_steps_per_s']:.0f}"),
            Column("vs torch", ">9", lambda r: ratio_text(r["ratio_vs_torch"])),
            Column("GFLOP/s", ">8", lambda r: f"{r['train_gflops_per_s']:.1f}"),
        ],
    )
    if peak:
        log(
            f"(GFLOP/s counts only the local steps: 12 * params * B per client-step; "
            f"matmul peak {peak['gflops']:.0f} GFLOP/s)"
        )
    target = best_jax_target(rows, args.clients, 10.0) if not args.no_torch else {}
    log(f"total benchmark time {time.perf_counter() - t_start:.0f} s")

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
            "torch_device": args.torch_device,
            "unroll": args.unroll,
            "cpu_devices": args.cpu_devices,
            "variants": args.variants,
            "model": f"MLP 60-{HIDDEN[0]}-{HIDDEN[1]}-10",
            "params": num_params(),
            "dataset": "synthetic(1,1) (FedProx), make_federated_dataset('synthetic', N, seed)",
            "topology": "ring, one gossip step",
            "command": command_line(argv),
        },
        "machine": info,
        "matmul_peak": peak,
        "results": rows,
        "per_clients": per_n,
        "target_10x": target,
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
