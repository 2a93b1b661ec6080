"""Client-level DP pieces: clipping, Gaussian noise, top-k, and their accounting."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_lab import privacy
from fedjax_lab import transforms
from fedjax_lab.transforms import dp


def random_update(seed, scale):
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.normal(size=(7, 5)) * scale, jnp.float32),
        "b": jnp.asarray(rng.normal(size=(5,)) * scale, jnp.float32),
    }


def norm(tree):
    return float(jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))))


def apply(transform, updates, key=None):
    transform = optax.with_extra_args_support(transform)
    extra = {} if key is None else {"key": key}
    return transform.update(updates, transform.init(updates), None, **extra)[0]


@pytest.mark.parametrize("seed", range(20))
def test_every_clipped_contribution_has_norm_at_most_c(seed):
    clip_norm = 0.7
    update = random_update(seed, scale=10.0 ** np.random.default_rng(seed).uniform(-2, 2))
    whole = apply(transforms.clip(clip_norm), update)
    assert norm(whole) <= clip_norm * (1 + 1e-5)
    if norm(update) <= clip_norm:  # inside the ball nothing changes
        np.testing.assert_allclose(whole["w"], update["w"])
    sparse = apply(optax.chain(transforms.top_k(0.3), transforms.clip(clip_norm)), update)
    assert norm(sparse) <= clip_norm * (1 + 1e-5)
    per_tensor = apply(transforms.clip(clip_norm, per_tensor=True), update)
    for leaf in jax.tree.leaves(per_tensor):
        assert float(jnp.linalg.norm(leaf)) <= clip_norm * (1 + 1e-5)


def test_noise_std_matches_its_formula_and_is_independent_across_clients_and_rounds():
    sigma, clip_norm, m = 0.95, 0.2, 50
    expected = sigma * clip_norm / math.sqrt(m)
    assert dp.noise_std(sigma, clip_norm, m) == pytest.approx(expected)
    noise = transforms.gaussian_noise(sigma, clip_norm=clip_norm, expected_clients=m)
    zeros = {"w": jnp.zeros((200, 500)), "b": jnp.zeros((500,))}
    draws = [
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(apply(noise, zeros, key))])
        for key in jax.random.split(jax.random.key(0), 4)  # 4 (client, round) keys
    ]
    for d in draws:  # 100,500 samples: the std is within 1% of its formula
        assert abs(d.std() / expected - 1) < 0.01 and abs(d.mean()) < 0.01 * expected
    corr = np.corrcoef(np.stack(draws))
    assert np.abs(corr[np.triu_indices(4, 1)]).max() < 0.02
    # The mean over m clients carries sigma * C / m.
    cohort = np.stack(
        [
            np.ravel(apply(noise, {"x": jnp.zeros(20_000)}, k)["x"])
            for k in jax.random.split(jax.random.key(1), m)
        ]
    ).mean(axis=0)
    assert abs(cohort.std() / (sigma * clip_norm / m) - 1) < 0.02


def test_top_k_keeps_the_largest_coordinates_and_noise_goes_on_them_only():
    update = random_update(3, 1.0)
    flat = np.concatenate([np.ravel(update["b"]), np.ravel(update["w"])])  # tree order
    k = dp.kept_coordinates(0.2, flat.size)
    assert k == math.ceil(0.2 * 40)
    kept = apply(transforms.top_k(0.2), update)
    kept_flat = np.concatenate([np.ravel(kept["b"]), np.ravel(kept["w"])])
    assert np.count_nonzero(kept_flat) == k
    threshold = np.sort(np.abs(flat))[-k]
    np.testing.assert_array_equal(kept_flat != 0, np.abs(flat) >= threshold)
    noisy = apply(
        optax.chain(transforms.top_k(0.2), transforms.gaussian_noise(std=1.0, on_support=True)),
        update,
        jax.random.key(0),
    )
    noisy_flat = np.concatenate([np.ravel(noisy["b"]), np.ravel(noisy["w"])])
    np.testing.assert_array_equal(noisy_flat[kept_flat == 0], 0.0)
    assert np.all(noisy_flat[kept_flat != 0] != kept_flat[kept_flat != 0])
    np.testing.assert_array_equal(apply(transforms.top_k(1.0), update)["w"], update["w"])


def test_bad_dp_arguments_are_named():
    with pytest.raises(ValueError, match="clip norm C > 0, got 0"):
        transforms.clip(0)
    with pytest.raises(ValueError, match="clip norm C > 0, got -1"):
        transforms.clip(-1, per_tensor=True)
    with pytest.raises(ValueError, match="sigma >= 0, got -0.5"):
        transforms.gaussian_noise(-0.5, clip_norm=1.0, expected_clients=10)
    with pytest.raises(ValueError, match="either std= or all of"):
        transforms.gaussian_noise(1.0)
    with pytest.raises(ValueError, match=r"p in \(0, 1\], got 1.5"):
        transforms.top_k(1.5)
    with pytest.raises(ValueError, match=r"p in \(0, 1\], got 0"):
        transforms.top_k(0)
    with pytest.raises(TypeError, match="key"):  # the key is required, never defaulted
        apply(transforms.gaussian_noise(std=1.0), random_update(0, 1.0))
    mech = privacy.Mechanism(0.95, 500, 50)
    with pytest.raises(ValueError, match=r"delta in \(0, 1\), got 1.5"):
        privacy.epsilon(mech, 10, 1.5)
    with pytest.raises(ValueError, match="sigma >= 0, got -1"):
        privacy.epsilon(mech._replace(noise_multiplier=-1.0), 10, 1e-5)
    with pytest.raises(ValueError, match="cohort size <= num_clients=500, got 600"):
        privacy.epsilon(mech._replace(cohort_size=600), 10, 1e-5)
    with pytest.raises(ValueError, match="PLD accountant handles Poisson sampling only"):
        privacy.epsilon(mech._replace(sampling="fixed"), 10, 1e-5, accountant="pld")
    with pytest.raises(ValueError, match="target epsilon > 0"):
        privacy.calibrate_noise_multiplier(0.0, 1e-5, 10, num_clients=10, cohort_size=1)


# Reference values computed with dp-accounting for the released DP-FedSAM setting
# (ALGORITHMS.md): q = 0.1 (50 of 500), sigma = 0.95, T = 200, delta = 5e-3.
REFERENCE = {("poisson", "rdp"): 7.82, ("poisson", "pld"): 6.54, ("fixed", "rdp"): 15.67}


@pytest.mark.parametrize("sampling,accountant", list(REFERENCE))
def test_epsilon_equals_dp_accountings_for_the_same_event(sampling, accountant):
    mech = privacy.Mechanism(0.95, 500, 50, sampling)
    eps = privacy.epsilon(mech, 200, 5e-3, accountant=accountant)
    assert eps == pytest.approx(REFERENCE[sampling, accountant], abs=0.005)
    assert privacy.epsilon(mech, 0, 5e-3) == 0.0
    assert privacy.epsilon(mech._replace(noise_multiplier=0.0), 1, 5e-3) == math.inf
    assert privacy.epsilon(mech, 100, 5e-3, accountant=accountant) < eps  # grows with T


def test_calibration_meets_the_target_epsilon():
    sigma = privacy.calibrate_noise_multiplier(7.82, 5e-3, 200, num_clients=500, cohort_size=50)
    assert abs(sigma - 0.95) < 2e-3
    assert privacy.epsilon(privacy.Mechanism(sigma, 500, 50), 200, 5e-3) <= 7.82
    tighter = privacy.calibrate_noise_multiplier(
        6.54, 5e-3, 200, num_clients=500, cohort_size=50, accountant="pld"
    )
    assert abs(tighter - 0.95) < 5e-3  # PLD's 6.54 is also sigma = 0.95
    assert privacy.epsilon(privacy.Mechanism(tighter, 500, 50), 200, 5e-3, "pld") <= 6.54


def test_zcdp_composition_and_conversion_match_the_closed_form():
    rho = privacy.zcdp_gaussian(sensitivity=1.0, std=4.0)
    assert rho == pytest.approx(1 / 32)
    total = 10 * rho  # composition adds
    delta = 1e-5
    assert privacy.zcdp_epsilon(total, delta) == pytest.approx(
        total + 2 * math.sqrt(total * math.log(1 / delta))
    )
    assert privacy.zcdp_epsilon(0.0, delta) == 0.0
