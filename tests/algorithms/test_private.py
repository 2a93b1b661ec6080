"""DP-FedAvg family against NumPy references; Poisson cohorts; epsilon in the records."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab.specs import config as config_lib
from fedjax_lab import privacy
from fedjax_lab import transforms
from fedjax_lab.algorithms import private
from fedjax_lab.algorithms import cohorts
from fedjax_lab.specs import base as spec_base
from fedjax_lab.runner import experiment
from fedjax_lab.runner import records
from tests.helpers import numpy_reference as ref
from tests.helpers.configs import resumable_config
from tests.helpers.problems import LOSS
from tests.helpers.problems import LR
from tests.helpers.problems import as64
from tests.helpers.problems import assert_close
from tests.helpers.problems import problem

N = 5


def test_poisson_cohort_is_distinct_ids_with_a_mask_of_independent_joins():
    cohort = cohorts.poisson_cohort(40, 0.25)
    assert cohort.slots == math.ceil(10 + 6 * math.sqrt(10 * 0.75)) and cohort.varies
    joins, sizes = np.zeros(40), []
    for r in range(400):
        ids, active = map(np.asarray, cohort.sample(jax.random.key(r)))
        assert len(set(ids.tolist())) == cohort.slots  # distinct, padding included
        assert np.all(active[: active.sum()]) and not np.any(active[active.sum() :])
        joins[ids[active]] += 1
        sizes.append(active.sum())
    assert abs(np.mean(sizes) - 10) < 0.5 and np.std(sizes) > 1  # the size varies
    assert np.all(np.abs(joins / 400 - 0.25) < 0.1)
    with pytest.raises(ValueError, match=r"q in \(0, 1\], got 0"):
        cohorts.poisson_cohort(40, 0.0)


def test_dp_fedavg_without_noise_is_the_clipped_mean_over_the_poisson_cohort():
    clip_norm = 0.05
    alg = private.dp_fedavg(
        LOSS,
        optax.sgd(LR),
        num_clients=N,
        clients_per_round=2,
        settings=private.DPSettings(clip_norm, 0.0, 1e-5),
    )
    params, batches = problem(num_batches=alg.cohort_size)
    key = jax.random.key(3)
    ids, active = map(np.asarray, cohorts.poisson_cohort(N, 2 / N).sample(key))
    state, metrics = alg.round(alg.init(params), None, batches, key)
    x = as64(params)
    total = {k: np.zeros_like(v) for k, v in x.items()}
    for slot in np.flatnonzero(active):
        y = ref.local_steps(x, as64(batches)["x"][slot], batches["y"][slot], LR)
        delta = {k: y[k] - x[k] for k in x}
        total = ref.add(total, delta, min(1.0, clip_norm / ref.norm(delta)))
    expected = ref.add(x, total, 1.0 / 2)  # divided by the expected cohort m = 2
    assert_close(state.params, expected)
    assert int(metrics["cohort_size"]) == active.sum()
    assert int(metrics["models_sent"]) == 2 * active.sum()


def noise_only(n, m, sigma, clip_norm, d, batch, sampling="poisson"):
    """A dp_fedavg that does not train (lr 0) on zero parameters ``[d, 50]``, and its
    batches: its model after a round is the noise alone."""
    alg = private.dp_fedavg(
        LOSS,
        optax.sgd(0.0),
        num_clients=n,
        clients_per_round=m,
        settings=private.DPSettings(clip_norm, sigma, 1e-5),
        sampling=sampling,
    )
    rng = np.random.default_rng(0)
    params = {"w": np.zeros((d, 50), np.float32), "b": np.zeros((50,), np.float32)}
    batches = {
        "x": rng.normal(size=(alg.cohort_size, 1, batch, d)).astype(np.float32),
        "y": rng.integers(0, 50, size=(alg.cohort_size, 1, batch)).astype(np.int32),
    }
    return alg, params, batches


def test_dp_noise_on_the_mean_has_std_sigma_c_over_m():
    sigma, clip_norm, m, n = 2.0, 1.0, 10, 40
    alg, params, batches = noise_only(n, m, sigma, clip_norm, 300, 4, sampling="fixed")
    state, _ = alg.round(alg.init(params), None, batches, jax.random.key(0))
    noise = np.asarray(state.params["w"]).ravel()  # no training: all of it is noise
    assert abs(noise.std() / (sigma * clip_norm / m) - 1) < 0.02


@pytest.mark.parametrize("n,m", [(40, 12), (100, 1)])  # q = 0.3; q = 0.01, often empty
def test_poisson_rounds_carry_the_central_noise_whatever_the_cohort_size(n, m):
    sigma, clip_norm = 2.0, 1.0
    alg, params, batches = noise_only(n, m, sigma, clip_norm, 200, 2)
    sizes = set()
    for seed in range(4):
        state, metrics = alg.round(alg.init(params), None, batches, jax.random.key(seed))
        sizes.add(int(metrics["cohort_size"]))
        noise = np.asarray(state.params["w"]).ravel()  # no training: all of it is noise
        # The sum carries sigma C and the server divides by m, for any |S| (0 included).
        assert abs(noise.std() / (sigma * clip_norm / m) - 1) < 0.03, metrics["cohort_size"]
    assert len(sizes) > 1 and (m > 1 or 0 in sizes)


def test_dp_runs_report_epsilon_as_the_accountant_computes_it(tmp_path):
    c = resumable_config(
        {"algorithm": "dp_fedsam", "server.clients_per_round": 3}, rounds=3, eval_every=1
    )
    summary = experiment.run(c, tmp_path)
    lines = records.load_metrics(tmp_path)
    mech = privacy.Mechanism(0.95, 6, 3, "poisson")
    for line in lines:
        assert line["epsilon"] == pytest.approx(privacy.epsilon(mech, line["round"], 5e-3))
        assert 0 <= line["cohort_size"] <= 6
    assert summary["epsilon"] == lines[-1]["epsilon"]
    stored = config_lib.from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert (stored.dp.sampling, stored.dp.accountant) == ("poisson", "rdp")


def test_dp_dfedsam_privatizes_every_message_before_gossip():
    alg = private.dp_dfedsam(
        LOSS,
        transforms.sam_sgd(LR, 0.2),
        num_clients=N,
        settings=private.DPSettings(0.05, 0.0, 1e-5),
    )
    params, batches = problem()
    w = ref.ring_matrix(N)
    state, _ = alg.round(alg.init(params), jnp.asarray(w, jnp.float32), batches, jax.random.key(0))
    expected = ref.clipped_gossip_round(
        [as64(params)] * N, w, as64(batches)["x"], batches["y"], LR, 0.05, rho=0.2
    )
    for i in range(N):
        assert_close({k: np.asarray(v[i]) for k, v in state.params.items()}, expected[i])


def test_target_epsilon_stops_before_the_round_that_would_exceed_it(tmp_path):
    mech = privacy.Mechanism(0.95, 6, 3, "poisson")
    eps = [privacy.epsilon(mech, t, 5e-3) for t in range(1, 8)]
    target = (eps[3] + eps[4]) / 2  # 4 rounds fit, the 5th would not
    c = resumable_config(
        {"algorithm": "dp_fedavg", "server.clients_per_round": 3, "dp.target_epsilon": target},
        rounds=7,
        eval_every=3,
        checkpoint_every=3,
    )
    summary = experiment.run(c, tmp_path / "run")
    lines = records.load_metrics(tmp_path / "run")
    assert [line["round"] for line in lines] == [3, 4]  # the last completed round evaluated
    assert lines[-1]["epsilon"] == pytest.approx(eps[3]) and lines[-1]["epsilon"] <= target
    assert "round 5 would take epsilon" in summary["stopped"] and summary["round"] == 4
    assert sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()) == [3, 4]
    # Resuming with more rounds runs none: the budget is spent.
    again = experiment.run(config_lib.update(c, rounds=9), tmp_path / "run", resume=True)
    assert again["round"] == 4 and "round 5" in again["stopped"]
    assert len(records.load_metrics(tmp_path / "run")) == 2
    # A budget that one round exceeds is an error before anything runs.
    with pytest.raises(ValueError, match=r"dp.target_epsilon=0.01 is exceeded by the first"):
        experiment.run(config_lib.update(c, {"dp.target_epsilon": 0.01}), tmp_path / "other")


def test_per_tensor_clipping_scales_the_noise_to_its_sensitivity():
    sigma, clip_norm, m = 1.0, 0.5, 4
    tree = {f"t{i}": jnp.full((30_000,), 10.0) for i in range(4)}  # L = 4 tensors
    noisy = private.privatizer(clip_norm, sigma, m, None, per_tensor=True)
    key = jax.random.key(3)
    out, _ = noisy.update(tree, noisy.init(tree), key=key)
    clipped = clip_norm / math.sqrt(30_000)  # every coordinate after clipping its tensor
    noise = np.concatenate([np.asarray(v) - clipped for v in out.values()])
    assert abs(noise.std() / (sigma * clip_norm * 2 / math.sqrt(m)) - 1) < 0.02  # sqrt(L) = 2
    whole = private.privatizer(clip_norm, sigma, m, None)
    out, _ = whole.update(tree, whole.init(tree), key=key)
    noise = np.concatenate([np.ravel(v) for v in out.values()])
    assert abs(noise.std() / (sigma * clip_norm / math.sqrt(m)) - 1) < 0.02


def test_weight_decay_adds_its_term_to_the_local_gradient():
    c = config_lib.resolve(
        resumable_config({"local.weight_decay": 0.1, "local.learning_rate": 0.5})
    )
    params = {"w": jnp.asarray([1.0, -2.0])}
    grads = {"w": jnp.asarray([0.3, 0.3])}
    for make in (spec_base.local_sgd, spec_base.local_sam_sgd):
        opt = optax.with_extra_args_support(make(c))
        sam_loss = lambda p: 0.3 * jnp.sum(p["w"])  # the SAM gradient is 0.3 everywhere
        updates, _ = opt.update(grads, opt.init(params), params, loss_fn=sam_loss)
        np.testing.assert_allclose(updates["w"], -0.5 * (0.3 + 0.1 * np.array([1.0, -2.0])))
    with pytest.raises(ValueError, match="local.weight_decay >= 0, got -1"):
        spec_base.local_sgd(config_lib.update(c, {"local.weight_decay": -1.0}))


def test_dp_fedsam_topk_sends_k_coordinates_per_client():
    alg = private.dp_fedavg(
        LOSS,
        transforms.sam_sgd(LR, 0.1),
        num_clients=N,
        clients_per_round=3,
        settings=private.DPSettings(0.5, 1.0, 1e-5),
        top_k=0.25,
    )
    params, batches = problem(num_batches=alg.cohort_size)
    _, metrics = alg.round(alg.init(params), None, batches, jax.random.key(0))
    d = sum(np.size(v) for v in params.values())
    k = transforms.dp.kept_coordinates(0.25, d)
    assert int(metrics["cohort_size"]) > 0
    assert int(metrics["coordinates_sent"]) == int(metrics["cohort_size"]) * k
    assert alg.message_bytes(params) == {"coordinates_sent": 8}
