"""Partial personalization against full-model sharing on a pathological split of digits.

Reproduce experiments/results/personalization_comparison.md with:

    python experiments/personalization_comparison.py --rounds 200 --seeds 0 1 2

(the defaults, so ``python experiments/personalization_comparison.py`` is the same run).
Every run is ``fedjax_lab.config.get_config()`` (digits, mlp, 100 clients) with
``data.partition = "pathological"`` (2 classes per client) and only the algorithm, its
topology and the seeds changed: seed s sets both ``seed`` and ``data.seed`` (the partition,
the test splits and the random graphs). Every algorithm runs 10 local steps per round (the
personalized ones 5 head steps then 5 body steps, both at step size 0.1); the server-based
ones sample 10 clients per round. The partition makes the classifier head personal.

Accuracy is the final mean per-client test accuracy: each client's own model on its own
test split (its personalized accuracy; for fedavg and dfedavg, the model it holds). The
verdicts compare paired-by-seed differences with a 95% t-interval
(:mod:`fedjax_lab.comparisons`). Run directories go to --runs, outside the repository.
The discussion below the table in the results file is written by hand and kept on reruns.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

from fedjax_lab import config as config_lib
from fedjax_lab.comparisons import paired_interval
from fedjax_lab.comparisons import run_seeds
from fedjax_lab.comparisons import verdict
from fedjax_lab.comparisons import write_results


# label -> (algorithm, config overrides)
RUNS = {
    "fedavg": ("fedavg", {}),
    "fedper": ("fedper", {}),
    "fedrep": ("fedrep", {}),
    "dfedavg (ring)": ("dfedavg", {"communication.topology": "ring"}),
    "dfedalt (ring)": ("dfedalt", {"communication.topology": "ring"}),
    "dfedsalt (ring)": ("dfedsalt", {"communication.topology": "ring"}),
    "dfedalt (random_in_neighbours)": (
        "dfedalt",
        {"communication.topology": "random_in_neighbours"},
    ),
    "dfedpgp (random_out_neighbours, push-sum)": ("dfedpgp", {}),
    "dfedpgp (random_in_neighbours, pull-average)": (
        "dfedpgp",
        {"communication.topology": "random_in_neighbours", "personal.push": "off"},
    ),
}

# (claim, A, B): the claim is "B beats A".
CLAIMS = (
    (
        "partial personalization beats full-model sharing (DFedAlt)",
        "dfedavg (ring)",
        "dfedalt (ring)",
    ),
    ("DFedSalt improves on DFedAlt", "dfedalt (ring)", "dfedsalt (ring)"),
    ("decentralized partial personalization beats FedRep", "fedrep", "dfedalt (ring)"),
    ("decentralized partial personalization beats FedPer", "fedper", "dfedalt (ring)"),
    ("FedPer beats FedAvg", "fedavg", "fedper"),
    (
        "push-sum on a directed graph beats naive directed mixing of the same degree",
        "dfedalt (random_in_neighbours)",
        "dfedpgp (random_out_neighbours, push-sum)",
    ),
    (
        "DFedPGP's push-sum beats the released code's pull-average",
        "dfedpgp (random_in_neighbours, pull-average)",
        "dfedpgp (random_out_neighbours, push-sum)",
    ),
)


def config_for(algorithm: str, overrides: dict, rounds: int, seed: int):
    c = config_lib.update(
        config_lib.get_config(),
        algorithm=algorithm,
        rounds=rounds,
        seed=seed,
        progress=False,
        data={"partition": "pathological", "seed": seed},
    )
    return config_lib.update(c, overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="experiments/results/personalization_comparison.md")
    parser.add_argument(
        "--runs",
        default=str(pathlib.Path(tempfile.gettempdir()) / "personalization_comparison_runs"),
    )
    args = parser.parse_args()

    start = time.time()
    results = {}  # label -> list of summaries, one per seed
    for label, (algorithm, overrides) in RUNS.items():
        results[label] = run_seeds(
            label,
            lambda seed: config_for(algorithm, overrides, args.rounds, seed),
            args.seeds,
            args.runs,
        )

    n = len(args.seeds)
    lines = [
        "# Partial personalization against full-model sharing, digits (pathological split)",
        "",
        (
            f"digits, mlp, 100 clients with 2 classes each, {args.rounds} rounds, seeds "
            f"{args.seeds} (each setting `seed` and `data.seed`); 10 local steps per round "
            "(5 head then 5 body for the personalized algorithms); server-based: 10 clients "
            "per round. Command: `python experiments/personalization_comparison.py --rounds "
            f"{args.rounds} --seeds {' '.join(map(str, args.seeds))}`."
        ),
        "",
        "Accuracy: the final mean per-client test accuracy, each client's own model on its "
        "own test split; spread: its standard deviation across clients (mean over seeds). "
        "Consensus: the consensus distance over the shared part.",
        "",
        "| algorithm (topology) | acc mean | acc std over seeds | per seed | spread across clients | consensus | MB sent per round | train s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, summaries in results.items():
        accs = [s["test_accuracy"] for s in summaries]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        spread = statistics.mean(s["test_accuracy_std"] for s in summaries)
        consensus = statistics.mean(s["consensus_distance"] for s in summaries)
        megabytes = statistics.mean(s["bytes_communicated"] / s["rounds"] / 1e6 for s in summaries)
        wall = statistics.mean(s["wall_time_s"] for s in summaries)
        lines.append(
            f"| {label} | {statistics.mean(accs):.4f} | {std:.4f}"
            f" | {', '.join(f'{a:.4f}' for a in accs)} | {spread:.4f} | {consensus:.4g}"
            f" | {megabytes:.2f} | {wall:.0f} |"
        )
    lines += [
        "",
        f"Claims, as paired differences B - A over {n} seeds with a 95% t-interval "
        f"({n - 1} dof): holds if the interval is above 0, does not hold if below, else "
        "inconclusive.",
        "",
        "| claim | A | B | mean diff | 95% interval | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for claim, a, b in CLAIMS:
        mean, low, high = paired_interval(
            [s["test_accuracy"] for s in results[a]], [s["test_accuracy"] for s in results[b]]
        )
        lines.append(
            f"| {claim} | {a} | {b} | {mean:+.4f} | [{low:+.4f}, {high:+.4f}] "
            f"| {verdict(low, high)} |"
        )
    lines += ["", f"Total time {time.time() - start:.0f} s."]
    table = "\n".join(lines) + "\n"
    write_results(args.out, table)  # the discussion below the marker is kept
    print(table)


if __name__ == "__main__":
    main()
