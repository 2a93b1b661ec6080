"""The reproduction suite: claims run end to end at a tiny size, finished members skipped,
interrupted ones resumed, sections of RESULTS.md regenerated, and verdict rules that fail
when they should."""

import dataclasses
import pathlib

import pytest

from fedjax_lab.runner import cli
from fedjax_lab.runner import reproduce
from fedjax_lab.runner.reproduce import Beats
from fedjax_lab.runner.reproduce import Claim
from fedjax_lab.runner.reproduce import Close
from fedjax_lab.runner.reproduce import GainExceeds
from fedjax_lab.runner.reproduce import Ordered

CLAIMS_FILE = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "claims.py"
TINY = ["num_clients=8", "rounds=3", "server.clients_per_round=8", "checkpoint_every=1"]

# Built to fail: tiny steps do not beat ordinary ones.
TINY_STEPS = Claim(
    name="tiny_steps_beat_sgd",
    statement="a step size of 1e-5 beats 0.1 (false)",
    members={
        "untrained": ("fedavg", {}),
        "fedavg": ("fedavg", {}),
        "fedavg, tiny steps": ("fedavg", {"local.learning_rate": 1e-5}),
    },
    rules=(
        Beats("fedavg", "fedavg, tiny steps"),
        Close("fedavg", "fedavg, tiny steps", 0.05),
        Beats("untrained", "fedavg"),  # this one holds
    ),
    scales={"small": {"dataset": "digits", "model": "mlp"}},
    untrained=("untrained",),
)


def test_a_claim_built_to_fail_does_not_hold_and_reruns_skip_or_resume(tmp_path):
    results = tmp_path / "RESULTS.md"
    run = lambda: reproduce.reproduce(
        TINY_STEPS,
        [0, 1, 2],
        scale="small",
        runs=tmp_path / "runs",
        results_path=results,
        command="test",
        extra=TINY,
    )
    section = run()
    assert "| fedavg, tiny steps beats fedavg (test_accuracy) | **does not hold** |" in section
    assert "stays within 0.05 of fedavg (test_accuracy) | **does not hold** |" in section
    assert "| fedavg beats untrained (test_accuracy) | **holds** |" in section
    assert (tmp_path / "tiny_steps_beat_sgd.png").stat().st_size > 0
    assert section in results.read_text()
    # A hand-written discussion survives regeneration; the same seeds give the same numbers.
    start, discussion, end = reproduce._markers(TINY_STEPS.name)
    results.write_text(results.read_text().replace(discussion, discussion + "\nby hand\n"))
    log = []
    again = reproduce.run_claim(
        TINY_STEPS, [0, 1, 2], tmp_path / "runs", extra=TINY, log=log.append
    )
    assert all("finished earlier, skipped" in line for line in log) and len(log) == 9
    # An interrupted member (no summary yet) resumes from its checkpoint, to the same model.
    member = tmp_path / "runs" / TINY_STEPS.name / "fedavg_seed1"
    before = (member / "summary.json").read_text()
    (member / "summary.json").unlink()
    log.clear()
    resumed = reproduce.run_claim(TINY_STEPS, [1], tmp_path / "runs", extra=TINY, log=log.append)
    assert [line for line in log if "resumed" in line] == [log[1]] and "fedavg seed 1" in log[1]
    assert '"params_sha256"' in before
    assert resumed["fedavg"][0]["params_sha256"] == again["fedavg"][1]["params_sha256"]
    numbers = lambda text: text.split("Command:")[0]  # all but the time it took
    assert numbers(run()) == numbers(section)
    text = results.read_text()
    assert text.count(start) == 1 and "by hand" in text
    # The summary at the top holds every claim's verdicts, once.
    row = "| tiny_steps_beat_sgd | a step size of 1e-5 beats 0.1 (false) | does not hold, "
    assert text.count(reproduce.SUMMARY[0]) == 1 and row + "does not hold, holds |" in text
    # Run afresh elsewhere, the same seed gives the same numbers.
    members = {"fedavg": TINY_STEPS.members["fedavg"]}
    alone = dataclasses.replace(TINY_STEPS, members=members, rules=(), untrained=())
    fresh = reproduce.run_claim(alone, [2], tmp_path / "fresh", extra=TINY)["fedavg"][0]
    for key in ("test_accuracy", "train_loss", "params_sha256"):
        assert fresh[key] == again["fedavg"][2][key]
    # Another claim with a member of the same config shares its finished runs.
    other = Claim(
        name="other",
        statement="s",
        members={"the same fedavg": ("fedavg", {})},
        rules=(),
        scales=TINY_STEPS.scales,
    )
    log.clear()
    shared = reproduce.run_claim(other, [0, 2], tmp_path / "runs", extra=TINY, log=log.append)
    assert shared["the same fedavg"] == [again["fedavg"][0], again["fedavg"][2]]
    assert all("shared" in line and "fedavg_seed" in line for line in log) and len(log) == 2
    assert not (tmp_path / "runs" / "other").exists()


def _summaries(**values):
    return {label: [{"test_accuracy": v} for v in vs] for label, vs in values.items()}


def test_rules_judge_paired_differences():
    results = _summaries(a=[0.5, 0.6, 0.7], b=[0.6, 0.72, 0.79], c=[0.7, 0.8, 0.9])
    assert reproduce.judge(Beats("a", "b"), results)[0] == "holds"
    assert reproduce.judge(Beats("b", "a"), results)[0] == "does not hold"
    assert reproduce.judge(Beats("a", "b", lower_is_better=True), results)[0] == "does not hold"
    assert reproduce.judge(Ordered(("a", "b", "c")), results)[0] == "holds"
    assert reproduce.judge(Ordered(("a", "c", "b")), results)[0] == "does not hold"
    noisy = _summaries(a=[0.5, 0.6, 0.7], b=[0.6, 0.5, 0.75])
    assert reproduce.judge(Beats("a", "b"), noisy)[0] == "inconclusive"
    assert reproduce.judge(Close("a", "b", 0.5), noisy)[0] == "holds"
    assert reproduce.judge(Close("a", "c", 0.05), results)[0] == "does not hold"
    # c gains 0.2 over a each seed, b about 0.1: an interaction, judged on the gains.
    assert reproduce.judge(GainExceeds(("a", "c"), ("a", "b")), results)[0] == "holds"
    assert reproduce.judge(GainExceeds(("a", "b"), ("a", "c")), results)[0] == "does not hold"
    assert reproduce.judge(GainExceeds(("a", "b"), ("b", "c")), results)[0] == "inconclusive"
    lower = reproduce.judge(GainExceeds(("a", "c"), ("a", "b"), lower_is_better=True), results)
    assert lower[0] == "does not hold"


def test_a_theory_check_computes_its_members(tmp_path):
    claim = reproduce.load_claims(CLAIMS_FILE)["gossip_error_decays_as_lambda_q"]
    results = reproduce.run_claim(claim, [0, 1, 2], tmp_path)
    assert [reproduce.judge(rule, results)[0] for rule in claim.rules] == ["holds"]
    # Built to fail: twice the decay is not lambda^Q.
    doubled = lambda label, seed: {
        k: v * (2 if label.startswith("measured") else 1)
        for k, v in claim.compute(label, seed).items()
    }
    wrong = reproduce.run_claim(dataclasses.replace(claim, compute=doubled), [0, 1, 2], tmp_path)
    assert [reproduce.judge(rule, wrong)[0] for rule in claim.rules] == ["does not hold"]
    with pytest.raises(ValueError, match="has no 'full' scale; it has \\['small'\\]"):
        reproduce.run_claim(claim, [0], tmp_path, scale="full")


def test_the_declared_claims_are_valid_and_listed(capsys):
    claims = reproduce.load_claims(CLAIMS_FILE)
    # The 10 claims, 2 theory checks and the MNIST-1D anchor.
    assert len(claims) == 13 and all(claim.rules for claim in claims.values())
    for claim in claims.values():
        for label in claim.members:
            reproduce.config_of(claim, label, 0, "small")  # every member's config resolves
    assert cli.main(["reproduce", "--list", "--claims", str(CLAIMS_FILE)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in claims)
    assert cli.main(["reproduce", "no_such", "--claims", str(CLAIMS_FILE)]) == 2
    assert "Unknown claim 'no_such'" in capsys.readouterr().err


def test_sections_follow_the_claims_order_and_keep_their_discussions(tmp_path):
    path = tmp_path / "RESULTS.md"
    for name in ("c", "a", "b"):
        reproduce.write_section(path, name, f"## {name}: claim {name}\n", order=("a", "b"))
    text = path.read_text()
    starts = [text.index(f"<!-- claim: {name} -->") for name in ("a", "b", "c")]
    assert starts == sorted(starts)
    _, discussion, _ = reproduce._markers("c")
    path.write_text(text.replace(discussion, discussion + "\nabout c\n"))
    reproduce.write_section(path, "a", "## a: claim a, again\n", order=("c", "a", "b"))
    text = path.read_text()
    assert text.index("<!-- claim: c -->") < text.index("<!-- claim: a -->")
    assert "about c" in text and "claim a, again" in text and "## a: claim a\n" not in text
    assert text.count("| c | claim c |  |") == 1  # in the summary, no rules


def test_a_rule_naming_an_undeclared_member_is_an_error():
    with pytest.raises(ValueError, match=r"names members \['c'\]"):
        Claim("x", "s", {"a": ("fedavg", {})}, (Beats("a", "c"),), {"small": {}})
    with pytest.raises(ValueError, match="no 'small' scale"):
        Claim("x", "s", {"a": ("fedavg", {})}, (), {"full": {}})


def _computed(gain, spread):
    """A claim computed, not trained: b = a + gain + noise of ``spread``, per seed."""

    def compute(label, seed):
        noise = [0.0, 1.0, -1.0, 0.5, -0.5, 0.8, -0.8, 0.2, -0.2, 0.6][seed % 10] * spread
        return {"test_accuracy": 0.8 + (gain + noise if label == "b" else 0.0)}

    return Claim(
        name="built",
        statement="b beats a (built)",
        members={"a": ("fedavg", {}), "b": ("fedavg", {})},
        rules=(Beats("a", "b"),),
        scales={"small": {}},
        compute=compute,
        smallest_effect=0.005,
    )


def test_verdicts_print_their_half_width_and_inconclusive_ones_the_seeds_they_need(tmp_path):
    def judged(gain, spread):
        results = reproduce.run_claim(_computed(gain, spread), [0, 1, 2], tmp_path)
        return reproduce.judge(Beats("a", "b"), results, 0.005)

    held = judged(0.03, 0.005)
    assert held[0] == "holds" and "half-width" in held[1]
    none = judged(0.0, 0.001)
    assert none[0] == "does not hold" and "no gain above 0.005" in none[1]
    claim = _computed(0.01, 0.01)
    results = reproduce.run_claim(claim, [0, 1, 2], tmp_path)
    verdict, detail = reproduce.judge(claim.rules[0], results, claim.smallest_effect)
    needed = reproduce.seeds_needed(claim, results)
    assert verdict == "inconclusive" and needed > 3
    assert f"about {needed} seeds would decide it" in detail


def test_until_decided_runs_the_seeds_an_inconclusive_rule_needs(tmp_path):
    claim = _computed(0.01, 0.01)
    logged = []
    section = reproduce.reproduce(
        claim,
        [0, 1, 2],
        scale="small",
        runs=tmp_path / "runs",
        results_path=tmp_path / "RESULTS.md",
        command="test",
        until_decided=True,
        log=logged.append,
    )
    assert any("running seeds [3" in line for line in logged)
    assert "| **holds** |" in section and "Seeds [0, 1, 2, 3" in section
