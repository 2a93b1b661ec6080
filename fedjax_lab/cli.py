"""The ``fedjax-lab`` command: ``list`` what is available, ``run`` an experiment."""

from __future__ import annotations

import argparse
import datetime
import sys

from fedjax_lab import config as config_lib
from fedjax_lab import data
from fedjax_lab import experiment
from fedjax_lab import models
from fedjax_lab import topology
from fedjax_lab.algorithms import registry

# Flags that are shorthands for config keys.
_FLAG_KEYS = {
    "algorithm": str,
    "dataset": str,
    "model": str,
    "topology": str,
    "clients": int,
    "rounds": int,
    "seed": int,
}
_FLAG_TO_KEY = {"clients": "num_clients"}


def _list(args: argparse.Namespace) -> int:
    del args
    sections = {
        "algorithms": registry.available_algorithms(),
        "datasets": data.available_datasets(),
        "partitions": data.available_partitions(),
        "models": models.available_models(),
        "topologies": topology.available_topologies(),
    }
    for title, names in sections.items():
        print(f"{title}: {', '.join(names)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    config = config_lib.get_config()
    flags = {
        _FLAG_TO_KEY.get(f, f): getattr(args, f) for f in _FLAG_KEYS if getattr(args, f) is not None
    }
    config = config_lib.update(config, **flags)
    config = config_lib.apply_overrides(config, args.set or [])
    workdir = args.workdir or (
        f"runs/{config.algorithm}_{config.dataset}_"
        f"{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    summary = experiment.run(config, workdir, overwrite=args.overwrite)
    print(
        f"final mean test accuracy: {summary['test_accuracy']:.4f} "
        f"(averaged model {summary['averaged_model_accuracy']:.4f}, "
        f"{summary['rounds']} rounds, {summary['wall_time_s']:.1f} s)"
    )
    print(f"run recorded in {workdir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedjax-lab", description="Federated learning experiments in JAX."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "list", help="print the available algorithms, datasets, models and topologies"
    ).set_defaults(func=_list)
    run = commands.add_parser(
        "run", help="run an experiment (defaults: DFedSAM on digits over a ring)"
    )
    for flag, kind in _FLAG_KEYS.items():
        run.add_argument(f"--{flag}", type=kind, help=f"config key {_FLAG_TO_KEY.get(flag, flag)}")
    run.add_argument(
        "--workdir", help="where the run is recorded (default: runs/<algorithm>_<dataset>_<time>)"
    )
    run.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override any config key (repeatable)"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="replace a run already recorded in --workdir"
    )
    run.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileExistsError) as error:
        print(f"fedjax-lab: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
