"""Smoke tests of the full-scale configs (each paper's main setting, ``experiments/*.py``,
the ``full`` scale of the claims): every member of every claim resolves at full scale, and
each config trains one tiny round end to end on fake TFDS data (``tests/helpers/fake_tfds.py``),
never downloading; a frozen pre-trained model is made by its recipe in one step."""

import pathlib

import pytest

from fedjax_lab.specs import config as config_lib
from fedjax_lab import data
from fedjax_lab import specs
from fedjax_lab import pretrained
from fedjax_lab.pretrained import make
from fedjax_lab.runner import experiment
from fedjax_lab.runner import reproduce
from tests.helpers import fake_tfds

pytest.importorskip("tensorflow_datasets")

CLAIMS = reproduce.load_claims(
    pathlib.Path(__file__).resolve().parents[2] / "experiments" / "claims.py"
)
FULL = sorted(
    {
        pathlib.Path(c.scales["full"]).name: c.scales["full"]
        for c in CLAIMS.values()
        if "full" in c.scales
    }.items()
)
# One round of one local step of 2 examples.
SHRINK = [
    "rounds=1",
    "local.steps=1",
    "local.batch_size=2",
    "data.test_examples_per_client=2",
    "eval_every=1",
    "checkpoint_every=1",
    "progress=False",
]
# 16 clients: a 4 x 4 torus, and room for the configs' 10 random neighbours.
TINY = ["num_clients=16", "server.clients_per_round=4", *SHRINK]


def _tiny_run(c) -> list[str]:
    """Overrides that shrink a resolved config ``c`` to one cheap round: ``SHRINK`` on 4
    clients (2 random neighbours each), with one head and one body step."""
    extra = ["num_clients=4", *SHRINK]
    read = specs.registry.keys_read(c)
    if "server.clients_per_round" in read:
        extra.append("server.clients_per_round=2")
    if str(c.communication.topology).startswith("random"):
        extra.append("communication.topology_k=2")
    if "personal.head_steps" in read:
        extra += ["personal.head_steps=1", "personal.body_steps=1"]
    return extra


def _anchor(claim) -> bool:
    """A benchmark's own published figures, reproduced in the benchmark's own setting."""
    return all(isinstance(rule, reproduce.Near) for rule in claim.rules)


def test_every_trained_claim_has_a_full_scale_of_tfds_data():
    lacking = [
        c.name
        for c in CLAIMS.values()
        if "full" not in c.scales and c.compute is None and not _anchor(c)
    ]
    assert lacking == []
    tfds_names = set(data.available_datasets()) - {"synthetic"}
    for claim in CLAIMS.values():
        if "full" not in claim.scales:
            continue
        for label in claim.members:
            c = reproduce.config_of(claim, label, 0, "full", TINY)
            assert c.dataset in tfds_names and not c.dataset.startswith("digits"), (
                claim.name,
                label,
            )
            assert c.model != "mlp", (claim.name, label)


@pytest.mark.parametrize("name, path", FULL, ids=[name for name, _ in FULL])
def test_a_full_scale_config_trains_a_tiny_round(name, path, tmp_path, monkeypatch):
    fake_tfds.refuse_network(monkeypatch)
    c = config_lib.load_config_file(path)
    extra = []
    with fake_tfds.mocked():
        if c.model == "pretrained":  # made by its recipe, one step of 2 examples, in tmp_path
            recipe = make.RECIPES[c.zo.model]
            monkeypatch.setitem(make.RECIPES, c.zo.model, recipe._replace(batch_size=2))
            model, kwargs, classes, params, details, shape = make.train(c.zo.model, steps=1)
            made = tmp_path / c.zo.model
            pretrained.save(
                made, model, params, num_classes=classes, input_shape=shape, model_kwargs=kwargs
            )
            extra.append(f"zo.model={made}")
        c = config_lib.apply_overrides(c, extra)
        c = config_lib.resolve(config_lib.apply_overrides(c, _tiny_run(config_lib.resolve(c))))
        summary = experiment.run(c, tmp_path / "run")
    assert summary["rounds"] == 1 and 0.0 <= summary["test_accuracy"] <= 1.0


def test_every_member_of_every_claim_builds_at_every_scale():
    """Each member's config is valid for its own algorithm: no key it does not read is set
    (a scale's config file serves every member; the frozen models of the full-scale
    zeroth-order members are made by their recipes first and are left out here)."""
    built = 0
    for claim in CLAIMS.values():
        for scale in claim.scales:
            for label in claim.members:
                c = reproduce.config_of(claim, label, 0, scale)
                if scale == "full" and c.model == "pretrained":
                    continue
                specs.registry.build_resolved(c, lambda params, batch: 0.0)
                built += 1
    assert built > 50
