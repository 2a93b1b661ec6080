"""Fed-LTP against a NumPy reference; masks, per-example clipping, zCDP, bytes and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab.specs import config as config_lib
from fedjax_lab import gradients
from fedjax_lab import privacy
from fedjax_lab.algorithms import lottery
from fedjax_lab.algorithms import private
from fedjax_lab.runner import experiment
from fedjax_lab.runner import records
from fedjax_lab.transforms import pruning
from tests.helpers import numpy_reference as ref
from tests.helpers.configs import resumable_config
from tests.helpers.problems import LOSS
from tests.helpers.problems import LR
from tests.helpers.problems import N
from tests.helpers.problems import as64
from tests.helpers.problems import assert_close
from tests.helpers.problems import problem

SCHEDULE = pruning.PruningSchedule(target=0.5, rate=0.3, every=1)  # 0.3, then 0.5


def ltp(**kwargs):
    mechanism = {"clip_norm": 0.5, "noise_multiplier": 0.0, "delta": 1e-5}
    for key in ("clip_norm", "noise_multiplier", "delta", "target_epsilon"):
        if key in kwargs:
            mechanism[key] = kwargs.pop(key)
    prune = lottery.Pruning(kwargs.pop("schedule", SCHEDULE), kwargs.pop("validation", None))
    optimizer = kwargs.pop("optimizer", optax.sgd(LR))
    return lottery.fed_ltp(
        LOSS,
        optimizer,
        num_clients=N,
        clients_per_round=2,
        local_steps=3,
        settings=private.DPSettings(**mechanism),
        prune=prune,
        **kwargs,
    )


def mask_of(state):
    return state.server[1].mask


def test_fed_ltp_rounds_match_the_numpy_reference():
    alg = ltp()
    params, batches = problem(num_batches=2)
    state = alg.init(params)
    x = as64(params)
    mask = {k: np.ones_like(v) for k, v in x.items()}
    for t, prune_to in enumerate([0.3, 0.5, None]):  # two pruning steps reach the target
        key = jax.random.key(t)
        ids = np.asarray(alg.cohort(key))
        state, metrics = alg.round(state, None, batches, key)
        x, mask = ref.fed_ltp_round(
            x, mask, ids, as64(batches)["x"], batches["y"], LR, 0.5, prune_to=prune_to
        )
        assert_close(state.params, x)
        np.testing.assert_array_equal(mask_of(state)["w"], mask["w"])
        assert float(metrics["sparsity"]) == pytest.approx(1 - mask["w"].mean())
    assert int((mask["w"] == 0).sum()) == 9  # floor(0.5 * 18)


def test_pruned_weights_stay_exactly_zero_and_only_nonzeros_travel():
    momentum_and_decay = optax.chain(optax.add_decayed_weights(0.01), optax.sgd(LR, momentum=0.9))
    alg = ltp(noise_multiplier=1.0, optimizer=momentum_and_decay)
    params, batches = problem(num_batches=2)
    state = alg.init(params)
    pruned_before = np.zeros(params["w"].shape, bool)
    for t in range(4):
        broadcast = state.params
        state, metrics = alg.round(state, None, batches, jax.random.key(t))
        pruned = np.asarray(mask_of(state)["w"]) == 0
        assert np.all(pruned >= pruned_before)  # once pruned, always pruned
        assert np.all(np.asarray(state.params["w"])[pruned] == 0.0)  # exactly zero
        pruned_before = pruned
        # Every client trained under the broadcast mask: it sent only the nonzeros of the
        # model it received (noise, momentum and weight decay never revive a pruned weight).
        nonzeros = sum(int(np.count_nonzero(v)) for v in jax.tree.leaves(broadcast))
        assert int(metrics["coordinates_sent"]) == 2 * nonzeros
    assert alg.message_bytes(params) == {"coordinates_sent": 4 + 4}


def test_per_example_clipping_bounds_every_example_and_the_noise_has_std_sigma_c_over_b():
    clip_norm, sigma = 0.3, 2.0
    rng = np.random.default_rng(0)
    params, _ = problem()
    for seed in range(2):
        x = rng.normal(size=(8, 6)).astype(np.float32) * 10 ** rng.uniform(-2, 2)
        y = rng.integers(0, 3, size=8).astype(np.int32)
        hook = gradients.per_example_clipped_gradient(clip_norm)
        for b in range(8):  # each example's contribution alone
            _, g = hook(LOSS, params, {"x": x[b : b + 1], "y": y[b : b + 1]}, None)
            assert ref.norm(as64(g)) <= clip_norm * (1 + 1e-5)
        expected = ref.clipped_grad(as64(params), x, y, clip_norm)
        for strategy in ("vmap", "map"):
            hook = gradients.per_example_clipped_gradient(clip_norm, strategy=strategy)
            _, g = jax.jit(lambda p, b, hook=hook: hook(LOSS, p, b, None))(params, {"x": x, "y": y})
            assert_close(g, expected)
    with pytest.raises(ValueError, match="Unknown per-example strategy 'loop'"):
        gradients.per_example_clipped_gradient(clip_norm, strategy="loop")
    big = {"w": jnp.zeros((300, 100)), "b": jnp.zeros(100)}
    batch = {"x": jnp.zeros((4, 300)), "y": jnp.zeros(4, jnp.int32)}
    noisy = gradients.per_example_clipped_gradient(clip_norm, noise_multiplier=sigma)
    _, clean = gradients.per_example_clipped_gradient(clip_norm)(LOSS, big, batch, None)
    _, g = noisy(LOSS, big, batch, jax.random.key(1))
    noise = np.asarray(g["w"] - clean["w"]).ravel()
    assert abs(noise.std() / (sigma * clip_norm / 4) - 1) < 0.02


def test_laplace_validation_rejects_a_harmful_pruning_step_and_is_accounted():
    params, batches = problem(num_batches=2)
    harsh = pruning.PruningSchedule(target=0.95, rate=1.0, every=1)
    strict = pruning.LaplaceValidation(epsilon=1e4, loss_bound=5.0, tolerance=0.0)
    loose = strict._replace(tolerance=10.0)
    for validation, accepted in ((strict, False), (loose, True)):
        alg = ltp(schedule=harsh, validation=validation)
        state, metrics = alg.round(alg.init(params), None, batches, jax.random.key(0))
        assert int(metrics["validated"]) == 1
        assert float(metrics["sparsity"]) == pytest.approx(17 / 18 if accepted else 0.0)
    # zCDP: K steps of 1 / (2 sigma^2) per round, plus eps_v^2 / 2 per validation.
    hook = lottery.zcdp_hook(3 / (2 * 1.5**2), SCHEDULE, loose._replace(epsilon=0.5), 1e-5)
    state = hook.init()
    for t, validated in enumerate([1, 0, 1], start=1):
        state, extra = hook.after_round(state, t, {"validated": validated})
    rho = 3 * 3 / (2 * 1.5**2) + 2 * 0.5**2 / 2
    assert extra["rho"] == pytest.approx(rho)
    assert extra["epsilon"] == pytest.approx(rho + 2 * math.sqrt(rho * math.log(1e5)))
    assert extra["epsilon"] == pytest.approx(privacy.zcdp_epsilon(rho, 1e-5))


def test_bytes_shrink_with_sparsity_and_a_run_records_them(tmp_path):
    params, batches = problem(num_batches=2)
    sent = {}
    for target in (0.0, 0.5, 0.9):
        alg = ltp(schedule=pruning.PruningSchedule(target, rate=1.0, every=1))
        state, total = alg.init(params), 0
        for t in range(3):
            state, metrics = alg.round(state, None, batches, jax.random.key(t))
            total += (
                int(metrics["coordinates_sent"]) * alg.message_bytes(params)["coordinates_sent"]
            )
        assert float(metrics["sparsity"]) == pytest.approx(int(target * 18) / 18)
        sent[target] = total
    assert sent[0.0] > sent[0.5] > sent[0.9]
    c = resumable_config(
        {
            "algorithm": "fed_ltp",
            "ltp.target_sparsity": 0.9,
            "ltp.prune_rate": 1.0,
            "ltp.prune_every": 1,
            "ltp.validation_epsilon": 0.0,
        },
        rounds=2,
        eval_every=1,
    )
    experiment.run(c, tmp_path)
    lines = records.load_metrics(tmp_path)
    assert lines[-1]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert lines[-1]["bytes_communicated"] == 8 * sum(r["coordinates_sent"] for r in lines)
    assert lines[-1]["epsilon"] > lines[0]["epsilon"] > 0


def test_fed_ltp_target_epsilon_stops_the_run(tmp_path):
    c = resumable_config(
        {"algorithm": "fed_ltp", "dp.noise_multiplier": 2.0, "dp.target_epsilon": 30.0},
        rounds=20,
    )
    summary = experiment.run(c, tmp_path)
    assert summary["epsilon"] <= 30.0 and "past dp.target_epsilon=30.0" in summary["stopped"]
    assert summary["round"] < 20


def test_bad_fed_ltp_input_is_named():
    with pytest.raises(ValueError, match=r"target sparsity in \[0, 1\), got 1.0"):
        ltp(schedule=SCHEDULE._replace(target=1.0))
    with pytest.raises(ValueError, match=r"pruning rate in \(0, 1\], got 0"):
        ltp(schedule=SCHEDULE._replace(rate=0))
    with pytest.raises(ValueError, match="every >= 1 rounds, got 0"):
        ltp(schedule=SCHEDULE._replace(every=0))
    with pytest.raises(ValueError, match="validation epsilon > 0, got -1"):
        ltp(validation=pruning.LaplaceValidation(-1, 5.0))
    with pytest.raises(ValueError, match="sigma >= 0, got -0.5"):
        ltp(noise_multiplier=-0.5)
    with pytest.raises(ValueError, match="clip norm C > 0, got 0"):
        ltp(clip_norm=0.0)
    with pytest.raises(ValueError, match="dp.target_epsilon=1.0 is exceeded by the first"):
        ltp(noise_multiplier=1.0, target_epsilon=1.0)
    c = config_lib.update(config_lib.get_config("fed_ltp"), {"ltp.validation_epsilon": -2.0})
    with pytest.raises(ValueError, match="ltp.validation_epsilon >= 0"):
        experiment.build(c)
