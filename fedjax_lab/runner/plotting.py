"""Figures of run records and topologies, written as PNG files.

* :func:`plot_runs` overlays several runs: test accuracy, train loss and consensus distance
  against the round.
* :func:`plot_topology` draws the graph of one round's mixing matrix.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no GUI), so this module
never changes the process-wide backend: it works the same in a script, on a headless
machine and in a notebook, where the PNG can be shown with ``IPython.display.Image``.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from fedjax_lab import topology as topology_lib
from fedjax_lab.runner import records

__all__ = ["plot_runs", "plot_topology"]

PathLike = str | os.PathLike
RUNS_FIGSIZE = (15.0, 4.5)  # inches; 1500 x 450 pixels at RUNS_DPI
RUNS_DPI = 100
TOPOLOGY_FIGSIZE = (6.0, 6.0)
TOPOLOGY_DPI = 100

# (metrics.jsonl key, panel title, y-axis scale)
_PANELS = (
    ("test_accuracy", "test accuracy (mean per client)", "linear"),
    ("train_loss", "train loss", "log"),
    ("consensus_distance", "consensus distance", "auto"),
)


def _run_label(workdir: PathLike) -> str:
    path = pathlib.Path(workdir)
    name = path.name or path.resolve().name
    config_path = path / "config.json"
    if config_path.is_file():
        try:
            algorithm = json.loads(config_path.read_text()).get("algorithm")
        except (json.JSONDecodeError, AttributeError):
            algorithm = None
        if algorithm:
            return f"{name} ({algorithm})"
    return name


def _series(records: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(rounds, values) of the records that hold a finite ``key``."""
    points = [
        (r["round"], float(r[key]))
        for r in records
        if "round" in r
        and isinstance(r.get(key), (int, float))
        and not isinstance(r.get(key), bool)
        and math.isfinite(r[key])
    ]
    rounds = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] for p in points], dtype=float)
    return rounds, values


def _set_scale(ax, scale: str, values: list[np.ndarray]) -> None:
    data = np.concatenate(values) if values else np.zeros(0)
    positive = data[data > 0]
    if scale == "log" and positive.size and positive.size == data.size:
        ax.set_yscale("log")
    elif scale in ("log", "auto") and positive.size:
        if positive.size == data.size:
            ax.set_yscale("log")
        else:  # exact zeros (e.g. a server-based run): linear near 0, log above
            ax.set_yscale("symlog", linthresh=float(positive.min()))


def _save(fig: Figure, out_path: PathLike, dpi: int) -> pathlib.Path:
    out = pathlib.Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=dpi, format="png")
    return out


def plot_runs(
    workdirs: Sequence[PathLike],
    out_path: PathLike,
    *,
    labels: Sequence[str] | None = None,
) -> pathlib.Path:
    """Overlays runs in one PNG: test accuracy, train loss and consensus distance per round.

    Run ``i`` is drawn in matplotlib's default colour ``C{i}`` in every panel. The train
    loss panel is log-scaled; the consensus distance panel is log-scaled, or symlog when
    some distances are exactly zero.

    Args:
      workdirs: Workdirs of finished (or running) runs, each with a ``metrics.jsonl``.
      out_path: Where to write the PNG (parent folders are created).
      labels: Legend entries, one per workdir; by default the workdir's name followed by
        the algorithm recorded in its ``config.json``, e.g. ``"run_a (dfedsam)"``.

    Returns:
      ``out_path`` as a ``pathlib.Path``.

    Raises:
      TypeError: If ``workdirs`` is a single path rather than a sequence of paths.
      ValueError: If ``workdirs`` is empty or ``labels`` has a different length.
      FileNotFoundError: If a workdir has no ``metrics.jsonl``.
    """
    if isinstance(workdirs, (str, bytes, os.PathLike)):
        raise TypeError(
            f"plot_runs needs a sequence of workdirs, got the single path {workdirs!r}; "
            "wrap it in a list."
        )
    workdirs = list(workdirs)
    if not workdirs:
        raise ValueError("plot_runs needs at least one workdir, got an empty sequence.")
    if labels is None:
        labels = [_run_label(w) for w in workdirs]
    else:
        if isinstance(labels, str):
            raise TypeError(f"labels must be a sequence of strings, got the string {labels!r}.")
        labels = list(labels)
        if len(labels) != len(workdirs):
            raise ValueError(
                f"Got {len(labels)} labels for {len(workdirs)} workdirs; pass one label per "
                f"workdir (labels={labels!r})."
            )
    runs = [records.load_metrics(w) for w in workdirs]

    fig = Figure(figsize=RUNS_FIGSIZE, layout="constrained")
    axes = fig.subplots(1, len(_PANELS))
    for ax, (key, title, scale) in zip(axes, _PANELS):
        plotted = []
        for i, (run, label) in enumerate(zip(runs, labels)):
            rounds, values = _series(run, key)
            ax.plot(rounds, values, color=f"C{i % 10}", marker="o", markersize=3, label=label)
            plotted.append(values)
        _set_scale(ax, scale, plotted)
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    return _save(fig, out_path, RUNS_DPI)


def _format_gap(gap: float) -> str:
    return f"{0.0 if abs(gap) < 1e-9 else gap:.4g}"  # an exact 0 comes out as ~ -2e-16


def _layout(name: str, n: int) -> tuple[np.ndarray, bool]:
    """Node positions ``[n, 2]`` and whether they lie on a grid (torus)."""
    side = math.isqrt(n)
    if name == "torus" and side * side == n:
        row, col = np.divmod(np.arange(n), side)
        return np.stack([col, side - 1 - row], axis=1).astype(float) / max(side - 1, 1), True
    # Client 0 at the top, clockwise.
    angle = np.pi / 2 - 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(angle), np.sin(angle)], axis=1), False


def plot_topology(
    topology: topology_lib.Topology,
    out_path: PathLike,
    *,
    round: int = 0,
) -> pathlib.Path:
    """Draws the communication graph of ``topology.matrix(round)`` as a PNG.

    Clients sit on a circle (client 0 at the top, clockwise), or on the grid for a torus.
    There is an edge wherever ``W[i, j] > 0`` with ``i != j``: a line when ``W`` is
    symmetric, otherwise an arrow ``j -> i`` (client ``i`` receives from client ``j``). The
    title names the topology, ``N`` and how fast it mixes (of that round's matrix for a
    time-varying topology): the spectral gap of a doubly stochastic topology, the second
    eigenvalue modulus ``|lambda_2|`` of a row or column stochastic one (whose spectral gap
    means nothing; see :func:`fedjax_lab.topology.second_eigenvalue_modulus`).

    Args:
      topology: A :class:`fedjax_lab.topology.Topology`.
      out_path: Where to write the PNG (parent folders are created).
      round: The round whose matrix is drawn (static topologies have only one).

    Returns:
      ``out_path`` as a ``pathlib.Path``.

    Raises:
      TypeError: If ``topology`` is not a :class:`~fedjax_lab.topology.Topology`.
      ValueError: If ``round`` is not a nonnegative integer.
    """
    if not isinstance(topology, topology_lib.Topology):
        raise TypeError(
            f"plot_topology needs a fedjax_lab.topology.Topology, got {type(topology).__name__} "
            f"{topology!r:.80}; wrap a matrix with topology.from_matrix(W)."
        )
    W = np.asarray(topology.matrix(round), dtype=np.float64)
    n = W.shape[0]
    positions, grid = _layout(topology.name, n)
    edges = (W > 0) & ~np.eye(n, dtype=bool)
    symmetric = bool(np.array_equal(edges, edges.T))

    doubly = topology.stochastic == "doubly"
    measure = "spectral gap" if doubly else "|lambda_2|"
    if topology.time_varying:
        value = (
            topology_lib.spectral_gap(W) if doubly else topology_lib.second_eigenvalue_modulus(W)
        )
        detail = f"time-varying, round {round}: {measure} {_format_gap(value)}"
        if not topology_lib.is_connected(W):
            detail += ", disconnected this round"
        if topology.period:
            value = topology.spectral_gap() if doubly else topology.second_eigenvalue_modulus()
            detail += f"\nper round over its period of {topology.period} rounds: "
            detail += _format_gap(value)
    else:
        value = topology.spectral_gap() if doubly else topology.second_eigenvalue_modulus()
        detail = f"{measure} {_format_gap(value)}"
    if topology.stochastic != "doubly":  # on a line of its own: the title stays narrow
        detail += f"\n{topology.stochastic} stochastic"

    fig = Figure(figsize=TOPOLOGY_FIGSIZE, layout="constrained")
    ax = fig.subplots()
    node_size = float(np.clip(3000.0 / n, 12.0, 300.0))
    edge_width = 1.2 if n <= 32 else 0.6
    edge_alpha = 0.8 if n <= 32 else 0.4

    if symmetric:
        i, j = np.nonzero(np.triu(edges))
        segments = np.stack([positions[i], positions[j]], axis=1)
        if grid:
            # A torus's wrap-around edges would cross the whole grid: draw each as two
            # short stubs leaving the grid on opposite sides instead.
            cell = 1.0 / max(math.isqrt(n) - 1, 1)
            vector = positions[j] - positions[i]
            wrap = np.linalg.norm(vector, axis=1) > 1.5 * cell
            away = -vector[wrap] / np.linalg.norm(vector[wrap], axis=1, keepdims=True)
            stubs_i = np.stack([positions[i[wrap]], positions[i[wrap]] + 0.4 * cell * away], 1)
            stubs_j = np.stack([positions[j[wrap]], positions[j[wrap]] - 0.4 * cell * away], 1)
            segments = np.concatenate([segments[~wrap], stubs_i, stubs_j])
        ax.add_collection(
            LineCollection(segments, colors="C0", linewidths=edge_width, alpha=edge_alpha)
        )
    else:
        # Information flows j -> i where W[i, j] > 0; a pair linked both ways gets one
        # double-headed arrow.
        shrink = math.sqrt(node_size) / 2 + 1
        for i, j in zip(*np.nonzero(edges)):
            if edges[j, i] and j > i:
                continue  # drawn with (j, i)
            ax.add_patch(
                FancyArrowPatch(
                    positions[j],
                    positions[i],
                    arrowstyle="<|-|>" if edges[j, i] else "-|>",
                    mutation_scale=10 if n <= 32 else 6,
                    color="C0",
                    linewidth=edge_width,
                    alpha=edge_alpha,
                    shrinkA=shrink,
                    shrinkB=shrink,
                )
            )
    ax.scatter(
        positions[:, 0],
        positions[:, 1],
        s=node_size,
        c="C1",
        edgecolors="black",
        linewidths=0.5,
        zorder=3,
    )
    if n <= 32:
        for client, (x, y) in enumerate(positions):
            ax.annotate(str(client), (x, y), ha="center", va="center", fontsize=7, zorder=4)
    ax.set_title(f"{topology.name}, N={n}\n{detail}")
    ax.set_aspect("equal")
    pad = 0.15 * max(float(np.ptp(positions[:, 0])), 1.0)
    ax.set_xlim(positions[:, 0].min() - pad, positions[:, 0].max() + pad)
    ax.set_ylim(positions[:, 1].min() - pad, positions[:, 1].max() + pad)
    ax.set_axis_off()
    return _save(fig, out_path, TOPOLOGY_DPI)
