"""The six core algorithms on digits with the default config; writes a results table.

    python experiments/digits_comparison.py [--rounds 200] [--seeds 0 1] [--out experiments/results]

Each algorithm runs with `fedjax_lab.specs.config.get_config()` (Dirichlet(0.3) over 100 clients;
ring topology for the decentralized ones, `server.clients_per_round` = 10% of them, 10, for the
server-based ones), with only `algorithm`, `rounds` and `seed` changed. The table reports the final mean per-client test
accuracy (mean over seeds), the averaged model's accuracy and the consensus distance.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics

from fedjax_lab.specs import config as config_lib
from fedjax_lab.runner import experiment

ALGORITHMS = ("fedavg", "fedsam", "dfedavg", "dfedavgm", "dfedsam", "dfedsam_mgs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument("--out", default="experiments/results")
    args = parser.parse_args()

    out = pathlib.Path(args.out)
    rows = []
    for name in args.algorithms:
        summaries = []
        for seed in args.seeds:
            c = config_lib.update(
                config_lib.get_config(),
                algorithm=name,
                rounds=args.rounds,
                seed=seed,
                progress=False,
            )
            summaries.append(experiment.run(c, out / "runs" / f"{name}_seed{seed}", overwrite=True))
            print(f"{name} seed {seed}: {summaries[-1]['test_accuracy']:.4f}", flush=True)
        mean = lambda key: statistics.mean(s[key] for s in summaries)
        rows.append(
            f"| {name} | {mean('test_accuracy'):.4f} | {mean('averaged_model_accuracy'):.4f}"
            f" | {mean('consensus_distance'):.3f} | {mean('wall_time_s'):.0f} |"
        )
    table = "\n".join(
        [
            f"digits, Dirichlet(0.3), 100 clients, {args.rounds} rounds, seeds {args.seeds}",
            "",
            "| algorithm | mean client test acc | averaged model acc | consensus distance | s/run |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    (out / "digits_comparison.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
