"""DP-FedSAM against DP-FedAvg at the same (epsilon, delta) on digits, over seeds.

Reproduce the table in (experiments/results/dp_comparison.md) with:

    python experiments/dp_comparison.py --rounds 200 --seeds 0 1 2 --sigmas 0.95 0.6

(those are the defaults, so ``python experiments/dp_comparison.py`` is the same run; about
13.5 minutes on 2 shared AMD EPYC cores). Each run is ``fedjax_lab.config.get_config()`` (digits,
Dirichlet(0.3) over 100 clients, 10 clients per round, so Poisson rate q = 0.1; dp.clip_norm
0.2, dp.delta 5e-3, RDP accountant; sam.rho 0.5 for dp_fedsam) with only ``algorithm``,
``rounds``, ``seed`` and ``dp.noise_multiplier`` changed. The epsilon of a run depends only on
(sigma, q, rounds, delta), so both algorithms at one sigma share (epsilon, delta); the
script checks that from the runs' summaries and fails if not.

The table gives, per algorithm and sigma, the final mean per-client test accuracy (mean and
sample std over seeds, and each seed's value), epsilon, delta, rounds and seconds per run,
then the paired-by-seed difference dp_fedsam - dp_fedavg with a 95% t-interval (n - 1
degrees of freedom) and a verdict: "holds" if the interval lies above 0, "does not hold"
if below, "inconclusive" otherwise. Run directories go to --runs (outside the repository
by default).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile
import time

from fedjax_lab import config as config_lib
from fedjax_lab import experiment
from fedjax_lab.comparisons import paired_interval
from fedjax_lab.comparisons import verdict

ALGORITHMS = ("dp_fedavg", "dp_fedsam")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.95, 0.6])
    parser.add_argument("--out", default="experiments/results/dp_comparison.md")
    parser.add_argument(
        "--runs", default=str(pathlib.Path(tempfile.gettempdir()) / "dp_comparison_runs")
    )
    args = parser.parse_args()

    start = time.time()
    runs = pathlib.Path(args.runs)
    results = {}  # (sigma, algorithm) -> list of (summary, config) per seed
    for sigma in args.sigmas:
        for name in ALGORITHMS:
            per_seed = []
            for seed in args.seeds:
                c = config_lib.update(
                    config_lib.get_config(),
                    algorithm=name,
                    rounds=args.rounds,
                    seed=seed,
                    progress=False,
                    dp={"noise_multiplier": sigma},
                )
                workdir = runs / f"sigma{sigma}" / f"{name}_seed{seed}"
                summary = experiment.run(c, workdir, overwrite=True)
                config = json.loads((workdir / "config.json").read_text())
                per_seed.append((summary, config))
                print(
                    f"sigma {sigma} {name} seed {seed}: acc {summary['test_accuracy']:.4f}"
                    f" eps {summary['epsilon']:.4f} ({summary['wall_time_s']:.0f} s)",
                    flush=True,
                )
            results[sigma, name] = per_seed

    lines = [
        "# DP-FedSAM vs DP-FedAvg at equal (epsilon, delta), digits",
        "",
        (
            f"digits, mlp, Dirichlet(0.3) over 100 clients, 10 per round (Poisson, q = 0.1),"
            f" clip C = 0.2, RDP accountant, {args.rounds} rounds, seeds {args.seeds};"
            " dp_fedsam with sam.rho = 0.5. Accuracy is the final mean per-client test accuracy."
        ),
        "",
        "| sigma | algorithm | acc mean | acc std | per seed | epsilon | delta | rounds | train s/run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    diffs = []
    for sigma in args.sigmas:
        eps_delta = set()
        for name in ALGORITHMS:
            per_seed = results[sigma, name]
            accs = [s["test_accuracy"] for s, _ in per_seed]
            for s, c in per_seed:
                eps_delta.add((round(s["epsilon"], 9), c["dp"]["delta"], s["rounds"]))
            eps, delta, rounds = next(iter(eps_delta))
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            wall = statistics.mean(s["wall_time_s"] for s, _ in per_seed)
            lines.append(
                f"| {sigma} | {name} | {statistics.mean(accs):.4f} | {std:.4f}"
                f" | {', '.join(f'{a:.4f}' for a in accs)} | {eps:.4f} | {delta:g}"
                f" | {rounds} | {wall:.0f} |"
            )
        if len(eps_delta) != 1:
            raise RuntimeError(
                f"sigma {sigma}: runs differ in (epsilon, delta, rounds): {eps_delta}"
            )
        a = [s["test_accuracy"] for s, _ in results[sigma, "dp_fedavg"]]
        b = [s["test_accuracy"] for s, _ in results[sigma, "dp_fedsam"]]
        diffs.append((sigma, eps, delta, *paired_interval(a, b)))

    n = len(args.seeds)
    lines += [
        "",
        f"Paired difference dp_fedsam - dp_fedavg over {n} seeds, 95% t-interval ({n - 1} dof):",
        "",
        "| sigma | epsilon | mean diff | 95% interval | DP-FedSAM > DP-FedAvg |",
        "|---|---|---|---|---|",
    ]
    for sigma, eps, _, mean, low, high in diffs:
        lines.append(
            f"| {sigma} | {eps:.4f} | {mean:+.4f} | [{low:+.4f}, {high:+.4f}] | {verdict(low, high)} |"
        )
    lines += ["", f"Total time {time.time() - start:.0f} s."]
    for sigma, eps, delta, mean, low, high in diffs:
        lines.append(
            f"Verdict at sigma {sigma} (epsilon {eps:.2f}, delta {delta:g}), claim"
            f' "DP-FedSAM beats DP-FedAvg at equal (epsilon, delta)": {verdict(low, high)}'
            f" (mean diff {mean:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}])."
        )
    table = "\n".join(lines) + "\n"
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
