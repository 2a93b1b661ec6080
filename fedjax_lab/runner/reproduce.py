"""Claims of the seed papers as declared experiment sets, with verdicts a rule generates.

A :class:`Claim` declares its members (label -> algorithm and config overrides), the
settings shared by every member at each scale (``"small"``: the embedded digits, on a CPU in
minutes; ``"medium"``: MNIST-1D, generated, on a laptop in an afternoon, where the members
are not saturated; ``"full"``: a paper's main setting, on an accelerator with the data),
and its rules. A
scale's settings are config overrides or a config file (``experiments/dfedsam_cifar10.py``,
which ``fedjax-lab run --config`` runs too).
:func:`run_claim` runs every member for every seed, each in its own directory
``runs/<claim>/<member>_seed<s>``: a member whose summary is there for the same config is
skipped, and an interrupted one is resumed from its newest checkpoint, so a long suite
survives interruption. A finished run of the same config in another claim's directory
under the same ``runs`` is shared, not repeated (claims have members in common). Seed ``s``
sets both ``seed`` and ``data.seed``.

The rules read one summary metric of every run (``test_accuracy`` unless said otherwise):

* :class:`Beats` ``(a, b)``, "b beats a": the paired differences over seeds, their mean and
  95% t-interval (:func:`fedjax_lab.runner.comparisons.paired_interval`); **holds** when the
  interval lies on b's side of 0, **does not hold** when it lies below the claim's smallest
  effect that matters (``Claim.smallest_effect``: no gain worth having), else
  **inconclusive**. ``lower_is_better`` for metrics such as the consensus distance.
* :class:`Close` ``(a, b, margin)``, "b stays within margin of a": holds when the whole
  interval lies inside ``(-margin, margin)`` (:func:`fedjax_lab.runner.comparisons.closeness`).
* :class:`Ordered` ``(labels)``: the metric improves along ``labels``; holds when every
  adjacent pair's :class:`Beats` holds, does not hold when one of them does not hold, else
  inconclusive.
* :class:`GainExceeds` ``(larger, smaller)``, "b gains more over a than d over c" (an
  interaction: "more so under strong heterogeneity", or "saturating" when the pairs are
  successive steps): the paired differences of the gains, ``(b - a) - (d - c)``, judged as
  for :class:`Beats`.
* :class:`Near` ``(member, reference, within)``, "member reproduces a published figure":
  the interval of ``member - reference`` lies inside ``(-within, within)``.

Every verdict reports its interval's half-width; an inconclusive one, how many seeds would
decide it with the observed mean and spread, and ``--until-decided`` runs them (at most
:data:`SEED_CAP`).

:func:`claim_report` turns the runs into a markdown section (the statement, the setting,
the table of mean, spread and number of seeds, the verdicts, the command, the machine and
the time) and :func:`write_section` puts it into ``RESULTS.md``, replacing that claim's
section only and keeping the hand-written discussion below its marker; the summary at the
top (every claim's verdicts) is regenerated from the sections.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import re
import statistics
import time
from typing import Any, NamedTuple, Sequence

from fedjax_lab.specs import config as config_lib
from fedjax_lab.runner import comparisons

SCALES = ("small", "medium", "full")


@dataclasses.dataclass(frozen=True)
class Beats:
    """ "``b`` beats ``a``" on ``metric`` (higher is better unless ``lower_is_better``)."""

    a: str
    b: str
    metric: str = "test_accuracy"
    lower_is_better: bool = False
    smallest_effect: float | None = None  # None: the claim's

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.a, self.b)

    def describe(self) -> str:
        return (
            f"{self.b} beats {self.a} ({self.metric}{', lower is better' * self.lower_is_better})"
        )


@dataclasses.dataclass(frozen=True)
class Close:
    """ "``b`` stays within ``margin`` of ``a``" on ``metric``."""

    a: str
    b: str
    margin: float
    metric: str = "test_accuracy"

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.a, self.b)

    def describe(self) -> str:
        return f"{self.b} stays within {self.margin:g} of {self.a} ({self.metric})"


@dataclasses.dataclass(frozen=True)
class Ordered:
    """The metric improves along ``labels`` (each beats the one before it)."""

    labels: tuple[str, ...]
    metric: str = "test_accuracy"
    lower_is_better: bool = False
    smallest_effect: float | None = None  # None: the claim's

    def describe(self) -> str:
        order = " < ".join(self.labels)
        return f"{self.metric} improves along {order}{' (lower is better)' * self.lower_is_better}"


@dataclasses.dataclass(frozen=True)
class GainExceeds:
    """The gain of ``larger[1]`` over ``larger[0]`` exceeds that of ``smaller[1]`` over
    ``smaller[0]`` on ``metric``: per seed, ``(b - a) - (d - c)`` for ``larger = (a, b)``,
    ``smaller = (c, d)``."""

    larger: tuple[str, str]
    smaller: tuple[str, str]
    metric: str = "test_accuracy"
    lower_is_better: bool = False
    smallest_effect: float | None = None  # None: the claim's

    @property
    def labels(self) -> tuple[str, ...]:
        return (*self.larger, *self.smaller)

    def describe(self) -> str:
        (a, b), (c, d) = self.larger, self.smaller
        return (
            f"the gain of {b} over {a} exceeds that of {d} over {c} ({self.metric}"
            f"{', lower is better' * self.lower_is_better})"
        )


@dataclasses.dataclass(frozen=True)
class Near:
    """ "``member`` reproduces a published figure": its mean over seeds lies within
    ``within`` of ``reference`` (the paper's number, on ``metric``)."""

    member: str
    reference: float
    within: float
    metric: str = "test_accuracy"
    source: str = ""  # where the figure is published

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.member,)

    def describe(self) -> str:
        source = f", {self.source}" if self.source else ""
        return (
            f"{self.member} is within {self.within:g} of the published {self.reference:g} "
            f"({self.metric}{source})"
        )


Rule = Beats | Close | Ordered | GainExceeds | Near


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim and the experiment set that checks it (module docstring).

    Attributes:
      name: the claim's name on the command line.
      statement: what the paper claims, in a sentence.
      members: label -> ``(algorithm, config overrides)``.
      rules: the :class:`Beats`, :class:`Close`, :class:`Ordered` and :class:`GainExceeds`
        rules of the verdict.
      scales: scale -> what every member shares: config overrides, or the path of a
        config file (``"small"`` required).
      setting: the setting in words, for the results.
      untrained: members evaluated as they start, without training (a frozen pre-trained
        model with no prompt yet); their summary holds the evaluation and ``rounds = 0``.
      compute: for a theory check that trains nothing, ``(member, seed) -> {metric: value}``
        gives every member's values; the members' algorithms are then unused.
      smallest_effect: the smallest difference that matters, in the rules' metric (0.005:
        half a point of accuracy); a "beats" rule whose interval lies below it does not
        hold (no gain worth having). A rule may set its own (another metric's scale).
    """

    name: str
    statement: str
    members: dict[str, tuple[str, dict[str, Any]]]
    rules: tuple[Rule, ...]
    scales: dict[str, dict[str, Any] | str | os.PathLike]
    setting: str = ""
    untrained: tuple[str, ...] = ()
    compute: Any = None
    smallest_effect: float = 0.005

    def __post_init__(self):
        if "small" not in self.scales:
            raise ValueError(f"Claim {self.name!r} declares no 'small' scale.")
        unknown = set(self.scales) - set(SCALES)
        if unknown:
            raise ValueError(f"Claim {self.name!r}: unknown scales {sorted(unknown)}.")
        for scale, settings in self.scales.items():
            if not isinstance(settings, dict) and not pathlib.Path(settings).is_file():
                raise ValueError(
                    f"Claim {self.name!r}: the {scale!r} scale is {settings!r}, expected config "
                    "overrides (a dict) or the path of a config file."
                )
        for rule in self.rules + (Ordered(self.untrained),):
            missing = [label for label in rule.labels if label not in self.members]
            if missing:
                raise ValueError(
                    f"Claim {self.name!r}: rule {rule.describe()!r} names members {missing} "
                    f"it does not declare; members: {list(self.members)}."
                )


def _settings(claim: Claim, scale: str) -> dict[str, Any] | str | os.PathLike:
    """What ``claim``'s members share at ``scale``; ValueError for a scale it lacks."""
    if scale not in claim.scales:
        raise ValueError(
            f"Claim {claim.name!r} has no {scale!r} scale; it has {sorted(claim.scales)}."
        )
    return claim.scales[scale]


def config_of(claim: Claim, label: str, seed: int, scale: str, extra: Sequence[str] = ()):
    """The config of member ``label`` for ``seed`` at ``scale``: the algorithm's defaults
    updated with the scale's overrides (or the scale's config file, for the member's
    algorithm), the member's overrides, then ``extra`` (``KEY=VALUE`` strings, a tiny size,
    say)."""
    algorithm, overrides = claim.members[label]
    settings = _settings(claim, scale)
    if isinstance(settings, dict):
        c = config_lib.update(config_lib.get_config(algorithm), settings)
    else:
        c = config_lib.with_algorithm(config_lib.load_config_file(settings), algorithm)
    c = config_lib.update(c, overrides)
    c = config_lib.update(c, {"seed": seed, "data.seed": seed, "progress": False})
    return config_lib.resolve(config_lib.apply_overrides(c, extra))


def _finished(workdir: pathlib.Path, wanted: dict[str, Any], rounds: int) -> dict[str, Any] | None:
    """The summary of a finished run of the config ``wanted`` (as its ``config.json``
    stores it, ``rounds`` trained) in ``workdir``, or None."""
    summary, stored = workdir / "summary.json", workdir / "config.json"
    if not (summary.is_file() and stored.is_file()):
        return None
    if json.loads(stored.read_text()) != wanted:
        return None
    result = json.loads(summary.read_text())
    return result if result.get("rounds") == rounds else None


def _find_finished(runs: pathlib.Path, workdir: pathlib.Path, seed: int, config, rounds: int):
    """A finished run of ``config``: in ``workdir`` or else in any claim's directory under
    ``runs`` (a shared one); its directory and summary, or None."""
    wanted = json.loads(json.dumps(config.to_dict()))
    for where in [workdir, *sorted(set(runs.glob(f"*/*_seed{seed}")) - {workdir})]:
        summary = _finished(where, wanted, rounds)
        if summary is not None:
            return where, summary
    return None


def _evaluate_untrained(config, workdir: pathlib.Path) -> dict[str, Any]:
    """The evaluation of ``config``'s initial state, recorded like a run's summary."""
    from fedjax_lab.runner import experiment

    exp = experiment.build(config)
    summary = {**exp.evaluate(exp.initial_state), "rounds": 0, "wall_time_s": 0.0}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(exp.config.to_dict(), indent=2))
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_claim(
    claim: Claim,
    seeds: Sequence[int],
    runs: str | pathlib.Path,
    *,
    scale: str = "small",
    extra: Sequence[str] = (),
    log=print,
) -> dict[str, list[dict[str, Any]]]:
    """Every member's run summaries, one per seed (skipping finished runs, resuming
    interrupted ones; module docstring)."""
    from fedjax_lab.runner import experiment

    _settings(claim, scale)  # a scale the claim lacks fails before any run
    results = {}
    for label in claim.members:
        results[label] = []
        slug = "".join(ch if ch.isalnum() else "_" for ch in label)
        for seed in seeds:
            if claim.compute is not None:
                results[label].append({**claim.compute(label, seed), "rounds": 0})
                continue
            c = config_of(claim, label, seed, scale, extra)
            workdir = pathlib.Path(runs) / claim.name / f"{slug}_seed{seed}"
            untrained = label in claim.untrained
            found = _find_finished(
                pathlib.Path(runs), workdir, seed, c, 0 if untrained else c.rounds
            )
            if found is not None:
                where, summary = found
                if where == workdir:
                    log(f"{claim.name}: {label} seed {seed}: finished earlier, skipped")
                else:
                    log(f"{claim.name}: {label} seed {seed}: the same run as {where}, shared")
            elif untrained:
                summary = _evaluate_untrained(c, workdir)
                log(f"{claim.name}: {label} seed {seed}: {summary['test_accuracy']:.4f} untrained")
            else:
                started = (workdir / "config.json").is_file()
                summary = experiment.run(c, workdir, resume=started)
                log(
                    f"{claim.name}: {label} seed {seed}: {summary['test_accuracy']:.4f} "
                    f"({summary['wall_time_s']:.0f} s{', resumed' * started})"
                )
            results[label].append(summary)
    return results


def _values(results, label: str, metric: str) -> list[float]:
    return [float(s[metric]) for s in results[label]]


def _differences(rule: Rule, results) -> list[float]:
    """The per-seed quantity a (non-ordered) rule judges: ``b - a`` (a gain, sign-corrected
    when lower is better), the difference of two gains, or a member minus its reference."""
    if isinstance(rule, Near):
        return [v - rule.reference for v in _values(results, rule.member, rule.metric)]
    sign = -1.0 if getattr(rule, "lower_is_better", False) else 1.0  # a gain is a decrease
    values = {
        label: [sign * v for v in _values(results, label, rule.metric)] for label in rule.labels
    }
    gain = lambda x, y: [vy - vx for vx, vy in zip(values[x], values[y])]
    if isinstance(rule, GainExceeds):
        (a, b), (c, d) = rule.larger, rule.smaller
        return [x - y for x, y in zip(gain(a, b), gain(c, d))]
    return gain(rule.a, rule.b)


def _pairs(rule: Ordered) -> list[Beats]:
    return [
        Beats(a, b, rule.metric, rule.lower_is_better, rule.smallest_effect)
        for a, b in zip(rule.labels, rule.labels[1:])
    ]


class _Assessment(NamedTuple):
    """A (non-ordered) rule judged: its verdict, the mean and 95% interval of its per-seed
    quantity, and, when inconclusive, the seeds that would decide it (None: over the cap)."""

    verdict: str
    mean: float
    low: float
    high: float
    effect: float
    margin: float | None
    needed: int | None


def _assess(rule: Rule, results, smallest_effect: float) -> _Assessment:
    own = getattr(rule, "smallest_effect", None)
    effect = smallest_effect if own is None else own
    margin = rule.margin if isinstance(rule, Close) else getattr(rule, "within", None)
    d = _differences(rule, results)
    mean, low, high = comparisons.paired_interval([0.0] * len(d), d)
    if margin is None:
        verdict = comparisons.verdict(low, high, effect)
    else:
        verdict = comparisons.closeness(low, high, margin)
    needed = None
    if verdict == "inconclusive":
        needed = comparisons.seeds_to_decide(d, effect, margin=margin, cap=SEED_CAP)
    return _Assessment(verdict, mean, low, high, effect, margin, needed)


def judge(
    rule: Rule, results: dict[str, list[dict[str, Any]]], smallest_effect: float = 0.0
) -> tuple[str, str]:
    """The rule's verdict and the numbers behind it (the mean, the 95% interval and its
    half-width), from the members' run summaries; ``smallest_effect`` is the claim's (a
    rule's own takes precedence). An inconclusive verdict says how many seeds would
    decide it (:func:`fedjax_lab.runner.comparisons.seeds_to_decide`)."""
    if isinstance(rule, Ordered):
        pairs = [(b, judge(b, results, smallest_effect)) for b in _pairs(rule)]
        verdicts = [v for _, (v, _) in pairs]
        if all(v == "holds" for v in verdicts):
            overall = "holds"
        elif "does not hold" in verdicts:
            overall = "does not hold"
        else:
            overall = "inconclusive"
        return overall, "; ".join(f"{b.a} < {b.b}: {v}, {detail}" for b, (v, detail) in pairs)
    a = _assess(rule, results, smallest_effect)
    if isinstance(rule, Near):
        what = f"{rule.member} - {rule.reference:g}"
    elif isinstance(rule, GainExceeds):
        (x, y), (u, v) = rule.larger, rule.smaller
        what = f"({y} - {x}) - ({v} - {u})"
    else:
        what = f"{rule.b} over {rule.a}"
    detail = (
        f"{what}: {a.mean:+.4g} [{a.low:+.4g}, {a.high:+.4g}], "
        f"half-width {(a.high - a.low) / 2:.3g}"
    )
    if a.verdict == "does not hold" and a.margin is None and a.effect > 0:
        detail += f"; no gain above {a.effect:g}"
    if a.verdict == "inconclusive":
        detail += (
            f"; about {a.needed} seeds would decide it"
            if a.needed
            else f"; more than {SEED_CAP} seeds would be needed to decide it"
        )
    return a.verdict, detail


SEED_CAP = 30  # the most seeds an inconclusive verdict asks for (and --until-decided runs)


def seeds_needed(claim: Claim, results) -> int | None:
    """How many seeds would decide every inconclusive rule of ``claim`` (the most any one
    needs, at most :data:`SEED_CAP`), or None when every rule is decided or no number of
    seeds up to the cap would decide one."""
    parts = [p for r in claim.rules for p in (_pairs(r) if isinstance(r, Ordered) else [r])]
    needs = [_assess(p, results, claim.smallest_effect).needed for p in parts]
    decidable = [n for n in needs if n is not None]
    return max(decidable) if decidable else None


def _metrics(claim: Claim, results) -> list[str]:
    """The metrics of the tables: test accuracy (when the runs have one), then the rules'."""
    every = [summary for runs in results.values() for summary in runs]
    names = ["test_accuracy"] if all("test_accuracy" in s for s in every) else []
    for rule in claim.rules:
        if rule.metric not in names:
            names.append(rule.metric)
    return names


def plot_claim(claim: Claim, results, path: str | pathlib.Path) -> pathlib.Path:
    """A PNG of every member's seeds (dots), their mean and standard deviation (bars), one
    panel per metric; the axis spans the values, so small differences show."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = _metrics(claim, results)
    labels = list(claim.members)
    width = max(4.5, 0.8 * len(labels))
    fig, axes = plt.subplots(1, len(metrics), figsize=(width * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, label in enumerate(labels):
            values = _values(results, label, metric)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            ax.plot([i] * len(values), values, "o", color="tab:blue", alpha=0.45, ms=4)
            ax.errorbar(i, statistics.mean(values), yerr=std, fmt="_", color="k", ms=14, capsize=5)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_title(metric, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(textwrap.fill(claim.statement, int(11 * width * len(metrics))), fontsize=9)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def claim_report(
    claim: Claim,
    results,
    *,
    seeds,
    scale: str,
    seconds: float,
    command: str,
    plot: str,
    extra: Sequence[str] = (),
) -> str:
    """The claim's markdown section of RESULTS.md (module docstring)."""
    metrics = _metrics(claim, results)
    training = sum(s.get("wall_time_s", 0.0) for runs in results.values() for s in runs)
    header = " | ".join(f"{m} mean | {m} std" for m in metrics)
    settings = _settings(claim, scale)
    if isinstance(settings, dict) and scale == "small":
        setting = claim.setting or "see experiments/claims.py"
    elif isinstance(settings, dict):  # the small setting's words would not describe it
        overrides = ", ".join(f"{key}={value}" for key, value in settings.items())
        setting = f"each member's small-scale setting with {overrides}"
    else:
        setting = f"the config {pathlib.Path(settings).name} (its docstring)"
    lines = [
        f"## {claim.name}: {claim.statement}",
        "",
        f"Setting ({scale} scale): {setting}"
        f"{f', with {chr(32).join(extra)}' if extra else ''}. Seeds {list(seeds)}.",
        "",
        f"| member | n | {header} | per seed ({metrics[0]}) |",
        "|---|---|" + "---|---|" * len(metrics) + "---|",
    ]
    for label in claim.members:
        cells = []
        for metric in metrics:
            values = _values(results, label, metric)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} | {std:.4f}")
        per_seed = ", ".join(f"{v:.4f}" for v in _values(results, label, metrics[0]))
        lines.append(f"| {label} | {len(results[label])} | {' | '.join(cells)} | {per_seed} |")
    lines += [
        "",
        f"Smallest effect that matters: {claim.smallest_effect:g}.",
        "",
        "| rule | verdict | paired difference [95% interval], half-width |",
        "|---|---|---|",
    ]
    for rule in claim.rules:
        verdict, detail = judge(rule, results, claim.smallest_effect)
        lines.append(f"| {rule.describe()} | **{verdict}** | {detail} |")
    lines += [
        "",
        f"![{claim.name}]({plot})",
        "",
        f"Command: `{command}`. Machine: {machine()}. Time: {seconds:.0f} s for this command; "
        f"{training:.0f} s of training in the members' runs (earlier and shared ones "
        "included).",
    ]
    return "\n".join(lines) + "\n"


def machine() -> str:
    """The machine in words: CPU model, cores, JAX backend and devices."""
    import jax

    model = platform.processor() or platform.machine()
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    devices = jax.devices()
    return (
        f"{model}, {os.cpu_count()} cores, JAX {jax.__version__} on {len(devices)} "
        f"{devices[0].platform} device(s)"
    )


def _markers(name: str) -> tuple[str, str, str]:
    return (
        f"<!-- claim: {name} -->",
        f"<!-- discussion: {name} (written by hand, kept) -->",
        f"<!-- end: {name} -->",
    )


def write_section(
    path: str | pathlib.Path, name: str, section: str, order: Sequence[str] = ()
) -> None:
    """Puts ``section`` into ``path`` as claim ``name``'s part, replacing the old one (its
    hand-written discussion kept) or appending it; the sections follow ``order`` (claim
    names; others after them)."""
    path = pathlib.Path(path)
    text = path.read_text() if path.exists() else "# Reproductions\n"
    start, discussion, end = _markers(name)
    kept = ""
    if start in text and end in text:
        before, _, rest = text.partition(start)
        old, _, after = rest.partition(end)
        kept = old.partition(discussion)[2]
    else:
        before, after = text.rstrip("\n") + "\n\n", "\n"
    body = f"{start}\n{section}\n{discussion}{kept or chr(10)}{end}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_with_summary(_ordered(before + body + after, order)))


def _ordered(text: str, order: Sequence[str]) -> str:
    """``text`` with its claims' sections in ``order``, when only blank lines separate them
    (nothing between them is moved or lost)."""
    names = re.findall(r"^<!-- claim: (\S+) -->$", text, flags=re.M)
    spans = []
    for name in names:
        start, _, end = _markers(name)
        first = text.index(start)
        spans.append((first, text.index(end, first) + len(end)))
    if not spans or any(text[a[1] : b[0]].strip() for a, b in zip(spans, spans[1:])):
        return text
    rank = {name: i for i, name in enumerate(order)}
    sections = dict(zip(names, (text[a:b] for a, b in spans)))
    names.sort(key=lambda name: rank.get(name, len(rank)))  # stable: others keep their order
    body = "\n\n".join(sections[name] for name in names)
    return text[: spans[0][0]] + body + text[spans[-1][1] :]


SUMMARY = ("<!-- summary: generated from the sections below -->", "<!-- end: summary -->")


def _with_summary(text: str) -> str:
    """``text`` with its summary (each claim's verdicts, one per rule, read from the
    sections) regenerated below the title."""
    rows = ["| claim | statement | verdicts, one per rule |", "|---|---|---|"]
    for name in re.findall(r"^<!-- claim: (\S+) -->$", text, flags=re.M):
        start, _, end = _markers(name)
        section = text.partition(start)[2].partition(end)[0]
        title = re.search(r"^## \S+: (.*)$", section, flags=re.M)
        verdicts = re.findall(r"\| \*\*(holds|does not hold|inconclusive)\*\* \|", section)
        rows.append(f"| {name} | {title.group(1) if title else ''} | {', '.join(verdicts)} |")
    summary = f"{SUMMARY[0]}\n" + "\n".join(rows) + f"\n{SUMMARY[1]}"
    if SUMMARY[0] in text and SUMMARY[1] in text:
        before, _, rest = text.partition(SUMMARY[0])
        return before + summary + rest.partition(SUMMARY[1])[2]
    title, newline, rest = text.partition("\n")
    return f"{title}\n\n{summary}\n{newline}{rest.lstrip(chr(10))}"


def load_claims(path: str | pathlib.Path) -> dict[str, Claim]:
    """The ``CLAIMS`` of a Python file (``experiments/claims.py``), by name."""
    module = config_lib.load_python_file(
        path, f"No claims file at {path} (run from the repository, or --claims)."
    )
    claims = {c.name: c for c in module.CLAIMS}
    if len(claims) != len(module.CLAIMS):
        raise ValueError(f"Two claims of {path} share a name.")
    return claims


def reproduce(
    claim: Claim,
    seeds: Sequence[int],
    *,
    scale: str,
    runs: str | pathlib.Path,
    results_path: str | pathlib.Path,
    command: str,
    extra: Sequence[str] = (),
    order: Sequence[str] = (),
    until_decided: bool = False,
    log=print,
) -> str:
    """Runs ``claim`` (:func:`run_claim`), draws it, and writes its section of
    ``results_path`` (the sections in ``order``, :func:`write_section`); returns the
    section. ``until_decided``: while a rule is inconclusive and at most :data:`SEED_CAP`
    seeds would decide it (:func:`seeds_needed`), run the next seeds too."""
    start = time.time()
    seeds = list(seeds)
    results = run_claim(claim, seeds, runs, scale=scale, extra=extra, log=log)
    while until_decided:
        needed = seeds_needed(claim, results)
        if needed is None or needed <= len(seeds):
            break
        more = [max(seeds) + 1 + i for i in range(needed - len(seeds))]
        log(f"{claim.name}: inconclusive with {len(seeds)} seeds; running seeds {more}")
        seeds += more
        results = run_claim(claim, seeds, runs, scale=scale, extra=extra, log=log)
    results_path = pathlib.Path(results_path)
    plot = plot_claim(claim, results, results_path.parent / f"{claim.name}.png")
    section = claim_report(
        claim,
        results,
        seeds=seeds,
        scale=scale,
        seconds=time.time() - start,
        command=command,
        plot=plot.name,
        extra=extra,
    )
    write_section(results_path, claim.name, section, order)
    return section
