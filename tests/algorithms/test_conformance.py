"""One conformance suite for every registered algorithm and every transformation.

Parametrized over ``available_algorithms()`` and ``fedjax_lab.transforms.__all__``, so what
is added later is checked without editing this file (a transformation needs one case in
``TRANSFORM_CASES``, and a test fails until it has one). The checks are plain functions that
raise AssertionError; deliberately broken toy algorithms show that each can fail.
"""

import dataclasses
import functools
import json

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

from fedjax_lab import algorithms
from fedjax_lab import clients
from fedjax_lab import specs
from fedjax_lab import transforms
from fedjax_lab.runner import cli
from fedjax_lab.runner import records
from fedjax_lab.transforms import pruning
from tests.helpers.conformance import build
from tests.helpers.conformance import inputs
from tests.helpers.devices import run_on_8_devices


def run_rounds(round_fn, alg, rounds=2):
    state, mixing, batches = inputs(alg)
    states, metrics = [state], []
    for r in range(rounds):
        state, m = round_fn(state, mixing, batches, jax.random.key(r))
        states.append(state)
        metrics.append(m)
    return states, metrics


def check_jit_matches_no_jit(alg, jitted=None, tolerance=1e-5):
    """``jitted``: the state after two jitted rounds (computed if None)."""
    if jitted is None:
        jitted = run_rounds(jax.jit(alg.round), alg)[0][-1]
    plain, _ = run_rounds(alg.round, alg)
    chex.assert_trees_all_close(jitted, plain[-1], atol=tolerance, rtol=tolerance)


def check_one_trace_per_round(alg):
    """Three rounds of ``alg.round`` jitted, failing on a second trace; returns their states
    and metrics."""
    chex.clear_trace_counter()
    round_fn = jax.jit(chex.assert_max_traces(alg.round, n=1))
    return run_rounds(round_fn, alg, rounds=3)


def check_state_is_stable(alg, run=None):
    """``run``: the states and metrics of rounds of ``alg`` (two jitted rounds if None)."""
    states, metrics = run or run_rounds(jax.jit(alg.round), alg, rounds=2)
    states = states[:3]
    shapes = [jax.tree.map(lambda x: (jnp.shape(x), jnp.asarray(x).dtype), s) for s in states]
    assert jax.tree.structure(states[0]) == jax.tree.structure(states[-1]), (
        "state structure changed"
    )
    assert shapes[0] == shapes[1] == shapes[2], "state shapes or dtypes changed across rounds"
    assert "train_loss" in metrics[0] and all(jnp.ndim(v) == 0 for v in metrics[0].values())
    for key in alg.message_bytes(
        jax.tree.map(lambda x: x[0], states[0].params) if alg.decentralized else states[0].params
    ):
        assert key in metrics[0], f"message count {key!r} missing from the round's metrics"
    assert int(states[-1].round) == 2


def check_strategies_agree(alg, expected=None, tolerance=1e-5):
    """The same algorithm's rounds with every client execution; ``expected``: the state
    after two jitted vmap rounds (computed if None)."""
    if expected is None:
        expected = run_rounds(jax.jit(alg.round), alg)[0][-1]
    for strategy, chunk in (("chunked", 3), ("sequential", None)):
        how = clients.Execution(strategy, chunk)
        actual, _ = run_rounds(jax.jit(functools.partial(alg.round, execution=how)), alg)
        chex.assert_trees_all_close(actual[-1], expected, atol=tolerance, rtol=tolerance)


NAMES = specs.available_algorithms()
# A finite difference divides float32 rounding (different under jit, per strategy and per
# device layout) by its radius: zeroth-order rounds agree to that precision. fed_bbpt's
# losses through the pre-trained CNN on random inputs are large, so its rounding is too.
ROUND_TOLERANCE = {"fes_ptzo": 1e-3, "fed_bbpt": 1e-2, "fedkseed": 1e-3}


@pytest.mark.parametrize("name", NAMES)
def test_one_trace_stable_state_eager_and_client_strategies_agree(name):
    alg = build(name)  # the vmap strategy
    run = check_one_trace_per_round(alg)  # three jitted rounds, one compilation for all checks
    check_state_is_stable(alg, run)
    after_two = run[0][2]
    tolerance = ROUND_TOLERANCE.get(name, 1e-5)
    check_jit_matches_no_jit(alg, after_two, tolerance)
    check_strategies_agree(alg, after_two, tolerance)


@pytest.mark.parametrize("name", NAMES)
def test_two_cli_rounds_on_8_clients_write_the_records(tmp_path, name):
    args = [
        "run",
        "--algorithm",
        name,
        "--clients",
        "8",
        "--rounds",
        "2",
        "--workdir",
        str(tmp_path),
    ]
    assert cli.main([*args, "--set", "progress=false", "--set", "eval_every=1"]) == 0
    lines = records.load_metrics(tmp_path)
    assert [l["round"] for l in lines] == [1, 2]
    assert lines[1]["bytes_communicated"] > lines[0]["bytes_communicated"] > 0
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["algorithm"] == name
    assert None not in (
        stored["server"]["clients_per_round"],
        stored["communication"]["gossip_steps"],
        stored["data"]["partition"],
        stored["sam"]["rho"],
    )


SHARDED_SCRIPT = """
import json, jax, jax.numpy as jnp, numpy as np
from fedjax_lab import algorithms, sharding, specs
import sys
from tests.helpers import conformance as t
assert jax.device_count() == 8
mesh = sharding.client_mesh()
out = {}
part, parts = int(sys.argv[1]), int(sys.argv[2])
for name in specs.available_algorithms()[part::parts]:
    alg = t.build(name)
    state, mixing, batches = t.inputs(alg)
    one, _ = jax.jit(alg.round)(state, mixing, batches, jax.random.key(0))
    split, _ = sharding.sharded_round(alg, mesh)(state, mixing, batches, jax.random.key(0))
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), one, sharding.to_host(split))
    out[name] = max(jax.tree.leaves(diffs) or [0.0])
print(json.dumps(out))
"""


SHARDED_PARTS = 2  # one process per part, so parallel test processes share the work


@pytest.mark.parametrize("part", range(SHARDED_PARTS))
def test_sharded_rounds_on_8_devices_equal_one_device(part):
    report = run_on_8_devices(SHARDED_SCRIPT, str(part), str(SHARDED_PARTS))
    assert set(report) == set(NAMES[part::SHARDED_PARTS])
    for name, diff in report.items():
        assert diff < ROUND_TOLERANCE.get(name, 1e-5), (name, diff)


# Deliberately broken toys: each property above must be able to fail.


def _broken(make_round):
    alg = build("fedavg")
    return dataclasses.replace(alg, round=make_round(alg))


def _drifting_dtype(alg):
    def round_fn(state, mixing, batches, key, execution=clients.VMAP):
        state, metrics = alg.round(state, mixing, batches, key, execution)
        return state._replace(
            params=jax.tree.map(lambda x: x.astype(jnp.bfloat16), state.params)
        ), metrics

    return round_fn


def _retracing(alg):
    calls = []

    def round_fn(state, mixing, batches, key, execution=clients.VMAP):
        calls.append(1)  # trace-time side effect: the state depends on the Python call count
        state, metrics = alg.round(state, mixing, batches, key, execution)
        return state._replace(round=state.round + len(calls) - 1), metrics

    return round_fn


def _float_counter(alg):
    def round_fn(state, mixing, batches, key, execution=clients.VMAP):
        state, metrics = alg.round(state, mixing, batches, key, execution)
        return state._replace(round=state.round.astype(jnp.float32)), metrics

    return round_fn


def _chunk_dependent():
    alg = build("fedavg")

    def round_fn(state, mixing, batches, key, execution=clients.VMAP):
        shift = 0.0 if execution.strategy == "vmap" else 1e-2
        state, metrics = alg.round(state, mixing, batches, key, execution)
        return state._replace(params=jax.tree.map(lambda x: x + shift, state.params)), metrics

    return dataclasses.replace(alg, round=round_fn)


def test_the_checks_catch_broken_algorithms():
    with pytest.raises(AssertionError, match="dtypes changed"):
        check_state_is_stable(_broken(_drifting_dtype))
    with pytest.raises(AssertionError):
        check_jit_matches_no_jit(_broken(_retracing))
    with pytest.raises(AssertionError, match="traced > 1 times"):
        check_one_trace_per_round(_broken(_float_counter))
    with pytest.raises(AssertionError):
        check_strategies_agree(_chunk_dependent())
    no_count = build("fedavg")
    no_count = dataclasses.replace(
        no_count,
        exchange=no_count.exchange._replace(
            message_bytes=lambda p: {"models_sent": 4, "seeds_sent": 8}
        ),
    )
    with pytest.raises(AssertionError, match="seeds_sent"):
        check_state_is_stable(no_count)


# Transformations.

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4), "b": jnp.ones(4)}


def _loss(p):
    return jnp.sum(jnp.sin(p["w"]) ** 2) + jnp.sum(p["b"] ** 2)


EXTRA = dict(
    loss_fn=_loss,
    key=jax.random.key(0),
    anchor=jax.tree.map(jnp.zeros_like, PARAMS),
    mask={"w": (jnp.arange(12) % 3 > 0).reshape(3, 4).astype(jnp.float32), "b": jnp.ones(4)},
    validation_losses=lambda p: (jnp.full((5,), _loss(p)), jnp.ones(5)),
    cohort_size=jnp.asarray(0, jnp.int32),
    control=jax.tree.map(lambda x: 0.1 * jnp.ones_like(x), PARAMS),
    client_control=jax.tree.map(lambda x: 0.3 * jnp.ones_like(x), PARAMS),
)
TRANSFORM_CASES = {
    "sam": lambda: transforms.sam(0.1),
    "sam_perturbation": None,  # a function, not a transformation (sam uses it)
    "proximal": lambda: transforms.proximal(0.3),
    "correction": lambda: transforms.correction(plus=("control",), minus=("client_control",)),
    "sam_sgd": lambda: transforms.sam_sgd(0.1, 0.05),
    "clip": lambda: transforms.clip(0.5),
    "gaussian_noise": lambda: transforms.gaussian_noise(std=0.1),
    "empty_cohort_noise": lambda: transforms.empty_cohort_noise(0.1),
    "top_k": lambda: transforms.top_k(0.25),
    "apply_mask": transforms.apply_mask,
    "magnitude_pruning": lambda: transforms.magnitude_pruning(
        pruning.PruningSchedule(0.5, 0.3, 1),
        validation=pruning.LaplaceValidation(1.0, 5.0, tolerance=10.0),
    ),
    "zo_gradient": lambda: transforms.zo_gradient(1e-2, 3),
    "spsa": lambda: transforms.spsa(1e-2, 2),
    "spsa_gc": lambda: transforms.spsa_gc(0.1, 1e-2),
    "kseed_sgd": lambda: transforms.kseed_sgd(0.05, num_seeds=16, steps=3, eps=1e-2),
}


# A finite difference divides float32 rounding (different under jit) by its radius.
ATOL = {"zo_gradient": 1e-4, "spsa": 1e-4, "spsa_gc": 1e-4, "kseed_sgd": 1e-4}


def test_every_transformation_has_a_conformance_case():
    assert set(transforms.__all__) == set(TRANSFORM_CASES)


@pytest.mark.parametrize("name", [n for n, f in TRANSFORM_CASES.items() if f is not None])
def test_transformation_conformance(name):
    opt = optax.with_extra_args_support(TRANSFORM_CASES[name]())
    grads = jax.grad(_loss)(PARAMS)
    state = opt.init(PARAMS)
    plain = opt.update(grads, state, PARAMS, **EXTRA)
    jitted = jax.jit(lambda g, s, p: opt.update(g, s, p, **EXTRA))(grads, state, PARAMS)
    chex.assert_trees_all_close(plain, jitted, atol=ATOL.get(name, 1e-6))
    chex.assert_trees_all_equal_dtypes(plain[0], grads)
    chex.assert_trees_all_equal_structs(plain[1], state)

    def step(carry, _):
        p, s = carry
        u, s = opt.update(jax.grad(_loss)(p), s, p, **EXTRA)
        return (optax.apply_updates(p, u), s), None

    (p, s), _ = jax.lax.scan(step, (PARAMS, state), None, length=3)
    chex.assert_trees_all_equal_structs(s, state)
    chained = optax.chain(opt, optax.scale(-0.1))
    u, _ = chained.update(grads, chained.init(PARAMS), PARAMS, **EXTRA)
    chex.assert_trees_all_close(u, jax.tree.map(lambda x: -0.1 * x, plain[0]), atol=1e-6)
