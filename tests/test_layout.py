"""The package's layout promises: the maths knows nothing of configs or runs, stays short,
and imports without the run machinery."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "fedjax_lab"
ALGORITHMS = sorted((PACKAGE / "algorithms").glob("*.py"))
# What the maths may not import: the config and registry, the runner, data, models, checkpoints.
FORBIDDEN = ("fedjax_lab.specs", "fedjax_lab.runner", "fedjax_lab.data", "fedjax_lab.models",
             "fedjax_lab.pretrained")
HEAVY = ("orbax", "tensorboardX", "sklearn", "matplotlib", "tensorflow_datasets", "tqdm")


def functions(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def imported(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("path", ALGORITHMS, ids=lambda p: p.name)
def test_no_function_in_algorithms_is_longer_than_60_lines_or_takes_more_than_10(path):
    long = [
        f"{f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for f in functions(path)
        if f.end_lineno - f.lineno + 1 > 60
    ]
    many = [
        f.name
        for f in functions(path)
        if len(f.args.posonlyargs) + len(f.args.args) + len(f.args.kwonlyargs) > 10
    ]
    assert not long and not many, (long, many)


@pytest.mark.parametrize("path", ALGORITHMS, ids=lambda p: p.name)
def test_algorithms_import_no_config_data_models_or_runner(path):
    bad = [name for name in imported(path) if name.startswith(FORBIDDEN)]
    bad += [name for name in imported(path) if name in ("fedjax_lab.specs.config",)]
    assert not bad, f"{path.name} imports {bad}"


def test_importing_the_algorithms_loads_no_run_machinery():
    code = (
        "import sys, fedjax_lab.algorithms; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
