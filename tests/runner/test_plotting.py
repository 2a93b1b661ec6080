"""Run and topology figures: the PNGs are written, sized as configured and actually drawn."""

import json

import matplotlib.image
import numpy as np
import pytest

from fedjax_lab import topology
from fedjax_lab.runner import plotting
from fedjax_lab.runner import records

C0 = (0x1F / 255, 0x77 / 255, 0xB4 / 255)  # matplotlib's default first colour, '#1f77b4'
C1 = (0xFF / 255, 0x7F / 255, 0x0E / 255)  # second, '#ff7f0e'


def _write_run(workdir, algorithm, rounds=10, scale=1.0, truncate=False):
    workdir.mkdir(parents=True)
    (workdir / "config.json").write_text(json.dumps({"algorithm": algorithm, "rounds": rounds}))
    lines = []
    for t in range(1, rounds + 1):
        record = {
            "round": t,
            "test_accuracy": 0.1 + 0.8 * scale * (1 - np.exp(-t / 3)),
            "averaged_model_accuracy": 0.1 + 0.7 * scale * (1 - np.exp(-t / 3)),
            "train_loss": 2.3 * np.exp(-t / (4 * scale)),
            "consensus_distance": 0.5 * scale * 0.6**t,
            "bytes_communicated": 1000 * t,
        }
        lines.append(json.dumps(record) + "\n")
    text = "".join(lines)
    if truncate:
        text += '{"round": 11, "test_accu'
    (workdir / "metrics.jsonl").write_text(text)
    return workdir


def _colour_pixels(image, colour, tol=0.02):
    return int(np.sum(np.all(np.abs(image[..., :3] - np.asarray(colour)) < tol, axis=-1)))


def _bluish_pixels(image):
    """Pixels of C0 drawn with some transparency over white (edges)."""
    r, b = image[..., 0], image[..., 2]
    return int(np.sum((b > 0.6) & (b - r > 0.25)))


def _non_white_pixels(image):
    return int(np.sum(np.any(image[..., :3] < 0.95, axis=-1)))


def test_load_metrics_reads_every_round(tmp_path):
    run = _write_run(tmp_path / "run", "dfedsam", rounds=4)
    loaded = records.load_metrics(run)
    assert [r["round"] for r in loaded] == [1, 2, 3, 4]
    assert set(loaded[0]) == {
        "round",
        "test_accuracy",
        "averaged_model_accuracy",
        "train_loss",
        "consensus_distance",
        "bytes_communicated",
    }


def test_load_metrics_skips_truncated_last_line(tmp_path):
    run = _write_run(tmp_path / "killed", "dfedavg", rounds=5, truncate=True)
    loaded = records.load_metrics(run)
    assert [r["round"] for r in loaded] == [1, 2, 3, 4, 5]


def test_load_metrics_rejects_damage_before_the_last_line(tmp_path):
    run = _write_run(tmp_path / "damaged", "dfedavg", rounds=3)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        records.load_metrics(run)


def test_load_metrics_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*metrics.jsonl"):
        records.load_metrics(tmp_path / "nowhere")


def test_plot_runs_draws_both_runs(tmp_path):
    run_a = _write_run(tmp_path / "run_a", "dfedsam")
    run_b = _write_run(tmp_path / "run_b", "dfedavg", scale=0.7, truncate=True)
    out = plotting.plot_runs([run_a, run_b], tmp_path / "figs" / "runs.png")
    assert out == tmp_path / "figs" / "runs.png"
    assert out.stat().st_size > 10_000
    image = matplotlib.image.imread(out)
    width, height = plotting.RUNS_FIGSIZE
    assert image.shape[:2] == (
        round(height * plotting.RUNS_DPI),
        round(width * plotting.RUNS_DPI),
    )
    assert _non_white_pixels(image) > 0.01 * image.shape[0] * image.shape[1]
    assert _colour_pixels(image, C0) > 100
    assert _colour_pixels(image, C1) > 100


def test_plot_runs_default_and_explicit_labels(tmp_path):
    run_a = _write_run(tmp_path / "run_a", "dfedsam")
    bare = _write_run(tmp_path / "bare", "x")
    (bare / "config.json").unlink()
    assert plotting._run_label(run_a) == "run_a (dfedsam)"
    assert plotting._run_label(bare) == "bare"
    out = plotting.plot_runs([run_a, bare], tmp_path / "labelled.png", labels=["SAM", "SGD"])
    assert out.stat().st_size > 10_000


def test_plot_runs_zero_consensus_distance(tmp_path):
    run = _write_run(tmp_path / "server", "fedavg")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [dict(json.loads(line), consensus_distance=0.0) for line in lines]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert plotting.plot_runs([run], tmp_path / "server.png").stat().st_size > 10_000


def test_plot_runs_errors(tmp_path):
    run = _write_run(tmp_path / "run", "dfedsam")
    with pytest.raises(ValueError, match="at least one workdir"):
        plotting.plot_runs([], tmp_path / "out.png")
    with pytest.raises(ValueError, match="2 labels for 1 workdirs"):
        plotting.plot_runs([run], tmp_path / "out.png", labels=["a", "b"])
    with pytest.raises(TypeError, match="single path"):
        plotting.plot_runs(str(run), tmp_path / "out.png")
    with pytest.raises(FileNotFoundError, match="missing"):
        plotting.plot_runs([run, tmp_path / "missing"], tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    "topo",
    [topology.ring(8), topology.random_in_neighbours(10, k=2, seed=0), topology.torus(16)],
    ids=lambda t: t.name,
)
def test_plot_topology(tmp_path, topo):
    out = plotting.plot_topology(topo, tmp_path / f"{topo.name}.png")
    assert out.is_file() and out.stat().st_size > 5_000
    image = matplotlib.image.imread(out)
    width, height = plotting.TOPOLOGY_FIGSIZE
    assert image.shape[:2] == (
        round(height * plotting.TOPOLOGY_DPI),
        round(width * plotting.TOPOLOGY_DPI),
    )
    assert _non_white_pixels(image) > 2_000
    assert _bluish_pixels(image) > 50  # edges
    assert _colour_pixels(image, C1) > 50  # nodes


@pytest.mark.parametrize(
    "topo",
    [
        topology.directed_ring(8),
        topology.random_out_neighbours(10, k=2, seed=0),
        topology.from_matrix(topology.random_out_neighbours(6, k=2, seed=1).matrix(0), "column"),
    ],
    ids=["directed_ring", "random_out_neighbours", "static_column"],
)
def test_plot_topology_directed(tmp_path, topo):
    out = plotting.plot_topology(topo, tmp_path / "directed" / f"{topo.name}.png", round=3)
    assert out.is_file() and out.stat().st_size > 5_000
    image = matplotlib.image.imread(out)
    assert _bluish_pixels(image) > 50  # arrows
    assert _colour_pixels(image, C1) > 50  # nodes


def test_plot_topology_title_names_the_right_measure(tmp_path, monkeypatch):
    titles = []
    original = plotting.Figure.subplots

    def subplots(self, *args, **kwargs):
        ax = original(self, *args, **kwargs)
        set_title = ax.set_title
        ax.set_title = lambda text, *a, **k: (titles.append(text), set_title(text, *a, **k))[1]
        return ax

    monkeypatch.setattr(plotting.Figure, "subplots", subplots)
    plotting.plot_topology(topology.directed_ring(8), tmp_path / "a.png")
    plotting.plot_topology(topology.random_out_neighbours(10, k=2, seed=0), tmp_path / "b.png")
    gap = 1 - np.cos(np.pi / 8)
    assert titles[0] == f"directed_ring, N=8\nspectral gap {gap:.4g}"
    W = topology.random_out_neighbours(10, k=2, seed=0).matrix(0)
    modulus = topology.second_eigenvalue_modulus(W)
    assert "spectral gap" not in titles[1]
    assert f"round 0: |lambda_2| {modulus:.4g}" in titles[1]
    assert titles[1].endswith("\ncolumn stochastic")


def test_plot_topology_time_varying_round_and_errors(tmp_path):
    one_peer = topology.one_peer_exponential(8)
    assert plotting.plot_topology(one_peer, tmp_path / "r3.png", round=3).is_file()
    with pytest.raises(ValueError, match="-1"):
        plotting.plot_topology(one_peer, tmp_path / "bad.png", round=-1)
    with pytest.raises(TypeError, match="ndarray"):
        plotting.plot_topology(topology.ring(8).matrix(0), tmp_path / "bad.png")
