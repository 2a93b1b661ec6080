"""The ``fedjax-lab`` command: ``list`` what is available, ``config`` to print a resolved
config with its comments, ``run`` an experiment, ``plot`` runs or topologies.

Every error a user can cause ends in one line on stderr (exit status 2), never a traceback;
set ``FEDJAX_LAB_TRACEBACK=1`` to see the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import pathlib
import sys

from fedjax_lab.specs import config as config_lib
from fedjax_lab import data
from fedjax_lab import models
from fedjax_lab import topology
from fedjax_lab import validation
from fedjax_lab.specs import registry
from fedjax_lab.runner import checkpoints
from fedjax_lab.runner import execution
from fedjax_lab.runner import experiment
from fedjax_lab.runner import locking
from fedjax_lab.runner import stopping

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
_FLAG_TO_KEY = {"clients": "num_clients", "topology": "communication.topology"}


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
    print()
    for name in registry.available_algorithms():
        print(f"  {name:<12} {registry.spec(name).summary}")
    return 0


def _base_config(args: argparse.Namespace):
    """The config a run starts from: the resumed run's, a config file's, or the default."""
    if args.resume:
        if not args.workdir:
            raise ValueError("--resume needs the --workdir of the run to continue.")
        if args.config:
            raise ValueError("--resume continues with the run's stored config; drop --config.")
        stored = pathlib.Path(args.workdir) / "config.json"
        if not stored.exists():
            raise FileNotFoundError(f"Nothing to resume: {stored} does not exist.")
        return config_lib.from_dict(json.loads(stored.read_text()))
    if args.config:
        return config_lib.load_config_file(args.config)
    return config_lib.get_config()


def _start_jax(args: argparse.Namespace) -> None:
    """Devices and processes, which JAX fixes when it starts: so before anything else."""
    import jax

    # main() called inside a running program keeps that program's devices, unless
    # --cpu-devices asks for a count (use_cpu_cores then says why it cannot be had).
    if args.cpu_devices is not None or not execution.backends_started():
        execution.use_cpu_cores(args.cpu_devices)
    given = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in given):
        if any(v is None for v in given):
            raise ValueError(
                "A multi-process run needs all of --coordinator, --num-processes and "
                f"--process-id; got {args.coordinator!r}, {args.num_processes!r} and "
                f"{args.process_id!r}."
            )
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )


def _config_from_args(args: argparse.Namespace):
    """The base config with the flags and ``--set`` overrides applied, resolved."""
    flags = {
        _FLAG_TO_KEY.get(f, f): getattr(args, f) for f in _FLAG_KEYS if getattr(args, f) is not None
    }
    config = config_lib.update(_base_config(args), flags)
    return config_lib.resolve(config_lib.apply_overrides(config, args.set or []))


def _config(args: argparse.Namespace) -> int:
    print(config_lib.describe(_config_from_args(args)), end="")
    return 0


def _run(args: argparse.Namespace) -> int:
    _start_jax(args)
    config = _config_from_args(args)
    workdir = args.workdir or (
        f"runs/{config.algorithm}_{config.dataset}_"
        f"{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    summary = experiment.run(config, workdir, resume=args.resume, overwrite=args.overwrite)
    print(
        f"final mean test accuracy: {summary['test_accuracy']:.4f} "
        f"(averaged model {summary['averaged_model_accuracy']:.4f}, "
        f"{summary['rounds']} rounds, {summary['wall_time_s']:.1f} s)"
    )
    print(f"run recorded in {workdir}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from fedjax_lab.runner import plotting  # matplotlib is only needed here

    if args.topology:
        if args.workdirs:
            raise ValueError("Give either run directories or --topology, not both.")
        graph = topology.make_topology(args.topology, args.clients)
        out = args.out or f"{args.topology}_{args.clients}.png"
        plotting.plot_topology(graph, out)
    else:
        if not args.workdirs:
            raise ValueError("Give one or more run directories, or --topology NAME.")
        out = args.out or str(pathlib.Path(args.workdirs[0]) / "curves.png")
        plotting.plot_runs(args.workdirs, out)
    print(f"wrote {out}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from fedjax_lab.runner import reproduce

    claims = reproduce.load_claims(args.claims)
    if args.list or not args.claim:
        width = max(len(name) for name in claims)
        for claim in claims.values():
            scales = ", ".join(claim.scales)
            print(f"{claim.name:{width}s}  [{scales}]  {claim.statement}")
        return 0
    validation.check_name("claim", args.claim, claims)
    command = f"fedjax-lab reproduce {args.claim} --seeds {' '.join(map(str, args.seeds))}"
    command += f" --scale {args.scale}" + "".join(f" --set {item}" for item in args.set or ())
    command += " --until-decided" * args.until_decided
    section = reproduce.reproduce(
        claims[args.claim],
        args.seeds,
        scale=args.scale,
        runs=args.runs,
        results_path=args.results,
        command=command,
        extra=args.set or (),
        order=list(claims),
        until_decided=args.until_decided,
    )
    print(section)
    print(f"wrote the {args.claim} section of {args.results}")
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
    show = commands.add_parser(
        "config", help="print the resolved config of a run, with the meaning of every key"
    )
    for sub in (run, show):
        sub.add_argument("--config", help="a Python config file with get_config() (experiments/)")
        for flag, kind in _FLAG_KEYS.items():
            sub.add_argument(
                f"--{flag}", type=kind, help=f"config key {_FLAG_TO_KEY.get(flag, flag)}"
            )
        sub.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override any config key, dotted for sections: local.steps=5 (repeatable)",
        )
        sub.add_argument(
            "--resume",
            action="store_true",
            help="continue the run in --workdir from its checkpoint",
        )
        sub.add_argument(
            "--workdir",
            help="where the run is recorded (default: runs/<algorithm>_<dataset>_<time>)",
        )
    show.set_defaults(func=_config)
    run.add_argument(
        "--overwrite", action="store_true", help="replace a run already recorded in --workdir"
    )
    run.add_argument(
        "--cpu-devices",
        type=int,
        help="CPU devices for JAX to create (default: one per core; see XLA_FLAGS)",
    )
    run.add_argument(
        "--coordinator", help="multi-process run: HOST:PORT of process 0 (jax.distributed)"
    )
    run.add_argument("--num-processes", type=int, help="multi-process run: how many processes")
    run.add_argument("--process-id", type=int, help="multi-process run: this process, 0-based")
    run.set_defaults(func=_run)

    plot = commands.add_parser(
        "plot", help="plot runs' curves, or draw a topology with its spectral gap"
    )
    plot.add_argument("workdirs", nargs="*", help="run directories to overlay")
    plot.add_argument("--topology", help="draw this topology instead")
    plot.add_argument("--clients", type=int, default=16, help="clients of --topology")
    plot.add_argument("--out", help="the PNG to write")
    plot.set_defaults(func=_plot)

    claims = commands.add_parser(
        "reproduce", help="run a seed paper's claim over seeds and write its verdict"
    )
    claims.add_argument("claim", nargs="?", help="the claim (--list shows them)")
    claims.add_argument("--list", action="store_true", help="list the declared claims")
    claims.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    claims.add_argument("--scale", choices=("small", "medium", "full"), default="small")
    claims.add_argument(
        "--until-decided",
        action="store_true",
        help="while a rule is inconclusive, run the seeds that would decide it (at most 30)",
    )
    claims.add_argument("--claims", default="experiments/claims.py", help="the claims file")
    claims.add_argument("--runs", default="runs/reproduce", help="where the runs are kept")
    claims.add_argument(
        "--results", default="experiments/results/RESULTS.md", help="the results file"
    )
    claims.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key of every member (a tiny size: rounds=2)",
    )
    claims.set_defaults(func=_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Libraries below (orbax, TFDS) log their own tracebacks through absl; the command
    # reports every failure itself, in one line.
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    try:
        return args.func(args)
    except FloatingPointError as error:
        print(f"fedjax-lab: stopped: {validation.one_line(error)}", file=sys.stderr)
        return 3
    except stopping.RunInterrupted as error:
        print(f"fedjax-lab: {validation.one_line(error)}", file=sys.stderr)
        return 128 + error.signum
    except (locking.WorkdirBusy, checkpoints.NoIntactCheckpoint, checkpoints.SaveFailed) as error:
        print(f"fedjax-lab: error: {validation.one_line(error)}", file=sys.stderr)
        return 2
    except (
        ValueError,
        TypeError,
        FileExistsError,
        FileNotFoundError,
        ImportError,
        MemoryError,
    ) as error:
        print(f"fedjax-lab: error: {validation.one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # pylint: disable=broad-except
        if os.environ.get("FEDJAX_LAB_TRACEBACK"):
            raise
        print(
            f"fedjax-lab: error: {type(error).__name__}: {validation.one_line(error)} "
            "(FEDJAX_LAB_TRACEBACK=1 shows the traceback)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
