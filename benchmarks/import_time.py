"""Import time: ``import fedjax_lab.algorithms`` against ``import flax, optax``, in one run.

Each statement runs in a fresh ``python -c`` subprocess (the interpreter running this
script, from the repository root), timed by wall clock around the subprocess: interpreter
start-up included, the same for every statement. The statements alternate, one of each per
repetition, so drifts of the machine's speed hit them alike; one untimed warm-up of each
first writes the bytecode caches. Printed: the median of each statement, and the ratio of
the algorithms' median to flax + optax's (what the maths costs on top of the libraries it
is built on; the target is <= 1.3). ``--top N`` adds the N modules with the largest
cumulative time in ``python -X importtime -c "import fedjax_lab.algorithms"``.

    python benchmarks/import_time.py [--repeats 7] [--top 15]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
STATEMENTS = {
    "flax+optax": "import flax, optax",
    "fedjax_lab.algorithms": "import fedjax_lab.algorithms",
    "fedjax_lab": "import fedjax_lab",
}
TARGET_RATIO = 1.3


def run(statement: str, *flags: str) -> tuple[float, str]:
    """Seconds of one fresh ``python [flags] -c statement``, and its stderr."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-c", statement], cwd=REPO, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{statement!r} failed:\n{done.stderr.strip()}")
    return seconds, done.stderr


def medians(repeats: int) -> dict[str, float]:
    for statement in STATEMENTS.values():  # warm-up: bytecode caches
        run(statement)
    times = {name: [] for name in STATEMENTS}
    for _ in range(repeats):
        for name, statement in STATEMENTS.items():
            times[name].append(run(statement)[0])
    return {name: statistics.median(values) for name, values in times.items()}


def heaviest(statement: str, top: int) -> list[tuple[int, int, str]]:
    """``(cumulative us, self us, module)`` of the ``top`` slowest imports of ``statement``."""
    _, err = run(statement, "-X", "importtime")
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, module = line.removeprefix("import time:").split("|")
        rows.append((int(cumulative), int(own), module.rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each statement")
    parser.add_argument("--top", type=int, default=15, help="heaviest modules to list (0: none)")
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]} ({sys.executable}), {args.repeats} repetitions")
    result = medians(args.repeats)
    for name, seconds in result.items():
        print(f"  {STATEMENTS[name]:<32s} median {seconds:.3f} s")
    ratio = result["fedjax_lab.algorithms"] / result["flax+optax"]
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(f"ratio fedjax_lab.algorithms / flax+optax: {ratio:.2f} ({verdict} <= {TARGET_RATIO})")
    if args.top:
        print(f"\nheaviest imports of {STATEMENTS['fedjax_lab.algorithms']!r} (-X importtime):")
        print(f"  {'cumulative':>10s}  {'self':>8s}  module")
        for cumulative, own, module in heaviest(STATEMENTS["fedjax_lab.algorithms"], args.top):
            print(f"  {cumulative / 1e3:8.1f}ms  {own / 1e3:6.1f}ms  {module}")


if __name__ == "__main__":
    main()
