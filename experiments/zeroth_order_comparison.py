"""Zeroth-order tuning of frozen pre-trained models: black-box prompts and split ViTs.

Reproduce experiments/results/zeroth_order_comparison.md with:

    python experiments/zeroth_order_comparison.py --rounds 100 --seeds 0 1 2

(the defaults, so ``python experiments/zeroth_order_comparison.py`` is the same run).
Every run is ``fedjax_lab.config.get_config(algorithm)`` with its own defaults (100
clients, 10 sampled per round, the dataset's Dirichlet partition, 10 local steps of batch
32) and only the rounds, the seeds and ``zo.white_box`` changed: seed s sets both ``seed``
and ``data.seed``. Checkpoints are off.

* Fed-BBPT (``fed_bbpt``) trains a prompt generator for the shipped ``digits_cnn``, a
  frozen CNN trained on the digits, on ``digits_inverted`` (1 - x), with two-point
  zeroth-order estimates (4 Gaussian directions, mu = 0.01, step size 0.3). The white-box
  reference (``zo.white_box=True``) trains the same prompt with the same step size by
  backpropagation through the open CNN. "No prompt" is the frozen CNN itself: the
  accuracy of the initial state, whose prompt is zero.
* FES-PIT (``fes_pit``) and FES-PTZO (``fes_ptzo``) tune the client side (embedding and a
  new classifier) of the shipped ``digits_vit`` (pre-trained on the digits 0-4) on
  ``digits_high`` (5-9, relabelled 0-4); the server's body stays frozen. FES-PIT
  backpropagates through the body, FES-PTZO estimates the tokens' gradient by a forward
  difference with one direction.

Accuracy is the final mean per-client test accuracy of the shared model. The
"beats" verdicts compare paired-by-seed differences with a 95% t-interval
(:mod:`fedjax_lab.comparisons`). A claim of closeness ("B stays close to A") holds when
the whole 95% interval of B - A lies inside +-MARGIN (5 points of accuracy), does not
hold when it lies entirely outside, and is inconclusive otherwise
(:func:`fedjax_lab.comparisons.closeness`).

Bytes come from the run summaries: each round's message counts (``models_sent``,
``activations_sent``; the same every round with a fixed cohort and step count) times the
bytes of one message (``Experiment.message_bytes``), checked against the run's
``bytes_communicated``. Run directories go to --runs, outside the repository. The
discussion below the tables in the results file is written by hand and kept on reruns.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

from fedjax_lab import config as config_lib
from fedjax_lab import experiment
from fedjax_lab.comparisons import closeness
from fedjax_lab.comparisons import paired_interval
from fedjax_lab.comparisons import run_seeds
from fedjax_lab.comparisons import verdict
from fedjax_lab.comparisons import write_results

MARGIN = 0.05  # closeness: the interval of the difference must lie within +-MARGIN
NO_PROMPT = "no prompt (frozen digits_cnn)"

# label -> (algorithm, config overrides)
RUNS = {
    "fed_bbpt (ZO)": ("fed_bbpt", {}),
    "fed_bbpt (white box)": ("fed_bbpt", {"zo.white_box": True}),
    "fes_pit": ("fes_pit", {}),
    "fes_ptzo": ("fes_ptzo", {}),
}

# (claim, A, B): the claim is "B beats A".
BEATS = (
    ("a ZO-trained prompt improves the frozen model", NO_PROMPT, "fed_bbpt (ZO)"),
    ("white-box prompt training beats ZO prompt training", "fed_bbpt (ZO)", "fed_bbpt (white box)"),
)
# (claim, A, B): the claim is "B stays within MARGIN of A".
CLOSE = (
    (
        "ZO prompt training approaches white-box prompt training",
        "fed_bbpt (white box)",
        "fed_bbpt (ZO)",
    ),
    ("fes_ptzo stays close to fes_pit in accuracy", "fes_pit", "fes_ptzo"),
)
BYTES = ("fes_pit", "fes_ptzo")  # the split-learning pair of the bytes table


def config_for(algorithm: str, overrides: dict, rounds: int, seed: int):
    c = config_lib.update(
        config_lib.get_config(algorithm),
        rounds=rounds,
        seed=seed,
        progress=False,
        checkpoint_every=0,
        data={"seed": seed},
    )
    return config_lib.update(c, overrides)


def per_round_bytes(summary: dict, message_bytes: dict[str, int]) -> dict[str, int]:
    """``{metric: bytes per round}`` from the last round's message counts; checked against
    the run's total."""
    sizes = {k: int(summary[k]) * size for k, size in message_bytes.items()}
    if sum(sizes.values()) * summary["rounds"] != summary["bytes_communicated"]:
        raise ValueError(
            f"The message counts of the last round ({sizes}) times {summary['rounds']} rounds "
            f"do not give the run's {summary['bytes_communicated']} bytes: the counts vary."
        )
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="experiments/results/zeroth_order_comparison.md")
    parser.add_argument(
        "--runs",
        default=str(pathlib.Path(tempfile.gettempdir()) / "zeroth_order_comparison_runs"),
    )
    args = parser.parse_args()

    start = time.time()
    accuracy = {NO_PROMPT: []}  # label -> one accuracy per seed
    for seed in args.seeds:
        exp = experiment.build(config_for("fed_bbpt", {}, args.rounds, seed))
        accuracy[NO_PROMPT].append(float(exp.evaluate(exp.initial_state)["test_accuracy"]))
        print(f"{NO_PROMPT} seed {seed}: acc {accuracy[NO_PROMPT][-1]:.4f}", flush=True)
    results, message_bytes = {}, {}  # label -> summaries; label -> {metric: bytes}
    for label, (algorithm, overrides) in RUNS.items():
        # Message sizes depend on the model and the batch, not on the seed.
        exp = experiment.build(config_for(algorithm, overrides, args.rounds, args.seeds[0]))
        message_bytes[label] = dict(exp.message_bytes)
        results[label] = run_seeds(
            label,
            lambda seed: config_for(algorithm, overrides, args.rounds, seed),
            args.seeds,
            args.runs,
        )
        for summary in results[label]:
            per_round_bytes(summary, message_bytes[label])  # the counts are per round
        accuracy[label] = [s["test_accuracy"] for s in results[label]]

    n = len(args.seeds)
    lines = [
        "# Zeroth-order tuning of frozen pre-trained models, digits",
        "",
        (
            f"100 clients (Dirichlet partition, alpha 0.3), 10 sampled per round, {args.rounds} "
            "rounds of 10 local steps (batch 32), seeds "
            f"{args.seeds} (each setting `seed` and `data.seed`). Fed-BBPT: a prompt for the "
            "frozen `digits_cnn` on `digits_inverted`, two-point ZO with 4 directions, mu 0.01, "
            "step size 0.3 (the white box: the same step size, true gradients). FES: the "
            "client side of `digits_vit` (pre-trained on digits 0-4) on `digits_high`; "
            "fes_ptzo's forward difference uses 1 direction, mu 0.01. Command: "
            "`python experiments/zeroth_order_comparison.py --rounds "
            f"{args.rounds} --seeds {' '.join(map(str, args.seeds))}`."
        ),
        "",
        (
            "Accuracy: the final mean per-client test accuracy of the shared model. No "
            "prompt: the frozen CNN on the same test splits (the initial state, whose prompt "
            "is zero)."
        ),
        "",
        "| algorithm | acc mean | acc std over seeds | per seed | MB sent per round | train s/run |",
        "|---|---|---|---|---|---|",
    ]
    for label, accs in accuracy.items():
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        summaries = results.get(label)
        if summaries:
            megabytes = statistics.mean(
                s["bytes_communicated"] / s["rounds"] / 1e6 for s in summaries
            )
            wall = statistics.mean(s["wall_time_s"] for s in summaries)
            cost = f"{megabytes:.4g} | {wall:.0f}"
        else:
            cost = "- | -"
        lines.append(
            f"| {label} | {statistics.mean(accs):.4f} | {std:.4f}"
            f" | {', '.join(f'{a:.4f}' for a in accs)} | {cost} |"
        )
    lines += [
        "",
        (
            f"Claims, as paired differences B - A over {n} seeds with a 95% t-interval "
            f'({n - 1} dof). "B beats A": holds if the interval is above 0, does not hold if '
            'below, else inconclusive. "B stays close to A": holds if the interval lies within '
            f"+-{MARGIN:.2f} (+-{100 * MARGIN:.0f} points of accuracy), does not hold if it "
            "lies entirely outside, else inconclusive."
        ),
        "",
        "| claim | A | B | mean diff | 95% interval | verdict |",
        "|---|---|---|---|---|---|",
    ]
    claims = [(claim, a, b, verdict) for claim, a, b in BEATS]
    claims += [
        (claim, a, b, lambda low, high: closeness(low, high, MARGIN)) for claim, a, b in CLOSE
    ]
    for claim, a, b, judge in claims:
        mean, low, high = paired_interval(accuracy[a], accuracy[b])
        lines.append(
            f"| {claim} | {a} | {b} | {mean:+.4f} | [{low:+.4f}, {high:+.4f}] "
            f"| {judge(low, high)} |"
        )
    lines += [
        "",
        (
            "Bytes per round of the split-learning pair: message counts per round (10 clients "
            "x 10 steps x tensors per step at the cut; models: each client part down and up) "
            "times the bytes of one message."
        ),
        "",
        "| algorithm | kind | messages per round | bytes per message | MB per round |",
        "|---|---|---|---|---|",
    ]
    totals = {}
    for label in BYTES:
        summary = results[label][0]
        sizes = per_round_bytes(summary, message_bytes[label])
        totals[label] = sum(sizes.values())
        for metric in sorted(sizes):
            kind = metric.removesuffix("_sent")
            lines.append(
                f"| {label} | {kind} | {int(summary[metric])} | {message_bytes[label][metric]} "
                f"| {sizes[metric] / 1e6:.4g} |"
            )
        lines.append(f"| {label} | total | | | {totals[label] / 1e6:.4g} |")
    a, b = BYTES
    lines += [
        "",
        f"{b} sends {totals[b] / totals[a]:.3f} times the bytes of {a} per round.",
        "",
        f"Total time {time.time() - start:.0f} s.",
    ]
    table = "\n".join(lines) + "\n"
    write_results(args.out, table)  # the discussion below the marker is kept
    print(table)


if __name__ == "__main__":
    main()
