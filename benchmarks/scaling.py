"""Time per DFedSAM round against the number of clients N, with peak memory.

    python benchmarks/scaling.py --clients 100 300 1000 3000 10000 --rounds 3

The workload of throughput.py (MLP 60-200-200-10 on FedProx synthetic(1, 1), K = 10 SAM
steps of batch 32, ring gossip) run through `fedjax_lab.runner.experiment.build` with the library's
defaults (`execution.strategy` "auto", `communication.form` "auto", one JAX CPU device per
core with the clients split over them, as `fedjax-lab run` does; `--cpu-devices 1` for one
device), so it measures what a user gets. Each N runs in its own process, which reports the median seconds per round (after one untimed compile-and-run
round) and its peak resident memory. Results go to benchmarks/results/scaling_cpu.json and a
log-log plot to benchmarks/results/scaling_cpu.png.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import time


def one(num_clients: int, rounds: int, cpu_devices: int | None) -> dict:
    import jax

    from fedjax_lab.specs import config as config_lib
    from fedjax_lab.runner import execution
    from fedjax_lab.runner import experiment

    execution.use_cpu_cores(cpu_devices)

    c = config_lib.update(
        config_lib.get_config(),
        dataset="synthetic",
        num_clients=num_clients,
        local={"steps": 10, "batch_size": 32, "learning_rate": 0.05},
        progress=False,
    )
    start = time.perf_counter()
    exp = experiment.build(c)
    state, _ = exp.train_round(exp.initial_state, 0)
    jax.block_until_ready(state)
    setup = time.perf_counter() - start
    times = []
    for t in range(1, rounds + 1):
        start = time.perf_counter()
        state, _ = exp.train_round(state, t)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "clients": num_clients,
        "devices": exp.execution.devices,
        "strategy": exp.execution.strategy,
        "chunk_size": exp.execution.chunk_size,
        "round_bytes": exp.execution.round_bytes,
        "gossip": c.communication.form,
        "median_s_per_round": median,
        "times_s": times,
        "client_steps_per_s": num_clients * c.local.steps / median,
        "setup_and_first_round_s": setup,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def plot(results: list[dict], path: pathlib.Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = [r["clients"] for r in results]
    t = [r["median_s_per_round"] for r in results]
    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.loglog(n, t, "o-", label=f"fedjax_lab (defaults, {results[0]['devices']} CPU devices)")
    ax.loglog(n, [t[0] * x / n[0] for x in n], "--", color="gray", label="linear in N")
    ax.set_xlabel("clients N")
    ax.set_ylabel("seconds per round")
    ax.set_title("DFedSAM round, MLP on synthetic(1,1), 2-core CPU")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 300, 1000, 3000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cpu-devices", type=int, help="JAX CPU devices (default: one per usable core)"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="benchmarks/results/scaling_cpu.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.rounds, args.cpu_devices)))
        return
    results = []
    for n in args.clients:
        devices = [] if args.cpu_devices is None else ["--cpu-devices", str(args.cpu_devices)]
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--rounds", str(args.rounds), *devices],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"N={n:6d}  {r['median_s_per_round']:8.3f} s/round  "
            f"{r['client_steps_per_s']:8.0f} client-steps/s  "
            f"peak RSS {r['peak_rss_bytes'] / 2**30:5.2f} GiB  "
            f"({r['devices']} devices, {r['strategy']}, chunk {r['chunk_size']})",
            flush=True,
        )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    by_n = {r["clients"]: r["median_s_per_round"] for r in results}
    summary = {"results": results}
    if 1000 in by_n and 10000 in by_n:
        summary["time_10000_over_1000"] = by_n[10000] / by_n[1000]
        print(f"time(10000)/time(1000) = {summary['time_10000_over_1000']:.2f}")
    out.write_text(json.dumps(summary, indent=1) + "\n")
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
