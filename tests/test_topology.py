"""Tests for fedjax_lab.topology."""

import math

import numpy as np
import pytest

from fedjax_lab import topology as topo


def _check_stochastic(W, stochastic, atol=1e-5):
    assert W.dtype == np.float32
    assert (W >= 0).all()
    if stochastic in ("row", "doubly"):
        np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=atol)
    if stochastic in ("column", "doubly"):
        np.testing.assert_allclose(W.sum(axis=0), 1.0, atol=atol)


# ----------------------------------------------------------------------------- spectral gaps


@pytest.mark.parametrize("n", [5, 10, 100])
def test_ring_spectral_gap(n):
    lam = (1 + 2 * math.cos(2 * math.pi / n)) / 3
    assert topo.ring(n).spectral_gap() == pytest.approx(1 - lam, abs=1e-10)


@pytest.mark.parametrize("n", [9, 16, 100])
def test_torus_spectral_gap(n):
    lam = (3 + 2 * math.cos(2 * math.pi / math.isqrt(n))) / 5
    assert topo.torus(n).spectral_gap() == pytest.approx(1 - lam, abs=1e-10)


@pytest.mark.parametrize("n", [8, 16, 32, 64, 100, 128, 1024])
def test_exponential_spectral_gap(n):
    tau = math.ceil(math.log2(n))
    assert topo.exponential(n).spectral_gap() == pytest.approx(2 / (1 + tau), abs=1e-10)


@pytest.mark.parametrize("n", [5, 7, 9, 33, 101])
def test_exponential_odd_n_mixes_at_least_as_fast(n):
    tau = math.ceil(math.log2(n))
    assert topo.exponential(n).spectral_gap() >= 2 / (1 + tau) - 1e-10


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_fully_connected_spectral_gap(n):
    assert topo.fully_connected(n).spectral_gap() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("n", [2, 8, 64])
def test_one_peer_exponential_gap_over_a_period_is_one_for_powers_of_two(n):
    # tau rounds average exactly: the product is 11^T / N, so the per-round gap is 1.
    assert topo.one_peer_exponential(n).spectral_gap() == pytest.approx(1.0, abs=1e-6)


def test_one_peer_exponential_gap_over_a_period_closed_form():
    # N = 3, tau = 2: W_1 W_0 = (I + P)(I + P^2) / 4 = I / 4 + J / 4 (P^3 = I, I + P + P^2 = J),
    # so W_1 W_0 - J / 3 = I / 4 - J / 12 has norm 1/4 and the gap is 1 - (1/4)^(1/2) = 1/2.
    assert topo.one_peer_exponential(3).spectral_gap() == pytest.approx(0.5, abs=1e-6)
    # Round 2 of N = 12 (shift 4) is disconnected; the period's gap is still positive.
    t = topo.one_peer_exponential(12)
    assert not topo.is_connected(t.matrix(2))
    assert topo.spectral_gap(t.matrix(2)) < 1e-6 < t.spectral_gap() < 1.0


def test_spectral_gap_of_random_time_varying_topology_raises():
    with pytest.raises(ValueError, match="no period"):
        topo.random_in_neighbours(12, 3, seed=1).spectral_gap()
    with pytest.raises(ValueError, match="no period"):
        topo.random_out_neighbours(12, 3, seed=1).spectral_gap()
    with pytest.raises(ValueError, match="no period.*second_eigenvalue_modulus"):
        topo.random_out_neighbours(12, 3, seed=1).second_eigenvalue_modulus()


@pytest.mark.parametrize("n", [3, 4, 7, 16, 101])
def test_directed_ring_spectral_gap_closed_form(n):
    t = topo.directed_ring(n)
    assert t.spectral_gap() == pytest.approx(1 - math.cos(math.pi / n), abs=1e-10)
    # W is circulant (normal): |lambda_2| = ||W - 11^T/N||_2 = cos(pi / N).
    assert t.second_eigenvalue_modulus() == pytest.approx(math.cos(math.pi / n), abs=1e-10)
    # Eigenvalues (1 + e^{2 pi i k / N}) / 2.
    expected = (1 + np.exp(2j * np.pi * np.arange(n) / n)) / 2
    got = np.linalg.eigvals(t.matrix(0).astype(np.float64))
    distance = np.abs(got[:, None] - expected[None, :])  # a matching, up to order
    assert distance.min(axis=0).max() < 1e-6 and distance.min(axis=1).max() < 1e-6


def test_second_eigenvalue_modulus_column_stochastic():
    # Column stochastic, not row stochastic; eigenvalues 1, 0.25 and 0.05.
    W = np.array([[0.5, 0.25, 0.0], [0.5, 0.5, 0.2], [0.0, 0.25, 0.8]])
    np.testing.assert_allclose(W.sum(axis=0), 1.0)
    assert not np.allclose(W.sum(axis=1), 1.0)
    moduli = sorted(np.abs(np.linalg.eigvals(W)), reverse=True)
    assert moduli[0] == pytest.approx(1.0)
    assert topo.second_eigenvalue_modulus(W) == pytest.approx(moduli[1], abs=1e-12)
    t = topo.from_matrix(W, "column")
    assert t.second_eigenvalue_modulus() == pytest.approx(moduli[1], abs=1e-12)
    with pytest.raises(ValueError, match="column stochastic, not doubly.*second_eigenvalue"):
        t.spectral_gap()
    # A complex pair: the rotation-like part has modulus 0.5 (eigenvalues 1, 0.5 e^{+-i pi/2}).
    W = np.array([[0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    assert topo.second_eigenvalue_modulus(W) == pytest.approx(
        abs((1 + np.exp(2j * np.pi / 3)) / 2), abs=1e-12
    )
    assert topo.second_eigenvalue_modulus(np.eye(3)) == pytest.approx(1.0)  # disconnected
    assert topo.second_eigenvalue_modulus([[1.0]]) == 0.0


def test_second_eigenvalue_modulus_matches_gap_for_symmetric_and_periodic():
    t = topo.ring(10)
    assert t.second_eigenvalue_modulus() == pytest.approx(1 - t.spectral_gap(), abs=1e-10)
    # Power of two: tau rounds average exactly, so the product has |lambda_2| = 0.
    # (The eigenvalues of the product are zero up to ~1e-17, whose cube root is ~1e-6.)
    assert topo.one_peer_exponential(8).second_eigenvalue_modulus() == pytest.approx(0, abs=1e-4)


def test_spectral_gap_function_on_identity_is_zero():
    assert topo.spectral_gap(np.eye(4)) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- builders


@pytest.mark.parametrize(
    "build",
    [
        lambda: topo.ring(12),
        lambda: topo.directed_ring(12),
        lambda: topo.torus(25),
        lambda: topo.exponential(12),
        lambda: topo.one_peer_exponential(12),
        lambda: topo.fully_connected(12),
        lambda: topo.erdos_renyi(12, 0.5, seed=1),
        lambda: topo.random_in_neighbours(12, 3, seed=1),
        lambda: topo.random_out_neighbours(12, 3, seed=1),
    ],
)
def test_builders_are_stochastic_as_declared(build):
    t = build()
    assert t.stochastic in ("doubly", "row", "column")
    for rnd in range(4):
        W = t.matrix(rnd)
        assert W.shape == (t.num_clients, t.num_clients)
        _check_stochastic(W, t.stochastic)
        assert (np.diag(W) > 0).all()  # self-loops
    if not t.time_varying:
        np.testing.assert_array_equal(t.matrix(0), t.matrix(7))


def test_exponential_structure_non_power_of_two():
    n, tau = 12, 4
    W = topo.exponential(n).matrix(0)
    assert ((W > 0).sum(axis=1) == tau + 1).all()
    for k in range(tau):  # i sends to i + 2^k, i.e. i + 2^k receives from i
        assert W[(3 + 2**k) % n, 3] == pytest.approx(1 / (tau + 1))
    assert not np.allclose(W, W.T)


def test_ring_and_torus_structure():
    W = topo.ring(6).matrix(0)
    np.testing.assert_allclose(W[2], [0, 1 / 3, 1 / 3, 1 / 3, 0, 0], atol=1e-7)
    W = topo.torus(16).matrix(0)
    # Client 5 is at (1, 1) of a 4x4 grid: neighbours 1, 9, 4, 6.
    np.testing.assert_allclose(np.flatnonzero(W[5]), [1, 4, 5, 6, 9])
    np.testing.assert_allclose(W, W.T)


def test_erdos_renyi_symmetric_doubly_stochastic():
    t = topo.erdos_renyi(40, 0.2, seed=3)
    W = t.matrix(0).astype(np.float64)
    np.testing.assert_array_equal(W, W.T)
    _check_stochastic(t.matrix(0), "doubly")
    assert topo.is_connected(W)
    # Same seed -> same graph; another seed -> another graph.
    np.testing.assert_array_equal(W, topo.erdos_renyi(40, 0.2, seed=3).matrix(0))
    assert not np.array_equal(W, topo.erdos_renyi(40, 0.2, seed=4).matrix(0))


def test_erdos_renyi_metropolis_weights():
    W = topo.erdos_renyi(15, 0.4, seed=0).matrix(0).astype(np.float64)
    degree = (W > 0).sum(axis=1) - 1
    i, j = np.argwhere(np.triu(W > 0, k=1))[0]
    assert W[i, j] == pytest.approx(1 / (1 + max(degree[i], degree[j])), rel=1e-6)


def test_random_in_neighbours():
    n, k = 20, 4
    t = topo.random_in_neighbours(n, k, seed=7)
    assert t.time_varying and t.stochastic == "row"
    W5 = t.matrix(5)
    assert ((W5 > 0).sum(axis=1) == k + 1).all()
    np.testing.assert_allclose(W5[W5 > 0], 1 / (k + 1), rtol=1e-6)
    assert (np.diag(W5) > 0).all()
    # Reproducible and independent of call order / instance.
    t.matrix(9)
    np.testing.assert_array_equal(W5, t.matrix(5))
    np.testing.assert_array_equal(W5, topo.random_in_neighbours(n, k, seed=7).matrix(5))
    assert not np.array_equal(W5, t.matrix(6))
    assert not np.array_equal(W5, topo.random_in_neighbours(n, k, seed=8).matrix(5))


def test_directed_ring_structure():
    W = topo.directed_ring(5).matrix(0)
    for i in range(5):  # i keeps 1/2 and sends 1/2 to i + 1
        assert W[i, i] == pytest.approx(0.5)
        assert W[(i + 1) % 5, i] == pytest.approx(0.5)
    assert ((W > 0).sum(axis=0) == 2).all() and ((W > 0).sum(axis=1) == 2).all()
    _check_stochastic(W, "doubly")
    assert topo.is_connected(W)
    with pytest.raises(ValueError, match="directed_ring needs num_clients >= 3, got 2"):
        topo.directed_ring(2)


def test_random_out_neighbours():
    n, k = 20, 4
    t = topo.random_out_neighbours(n, k, seed=7)
    assert t.time_varying and t.stochastic == "column" and t.period is None
    W5 = t.matrix(5)
    _check_stochastic(W5, "column")
    assert not np.allclose(W5.sum(axis=1), 1.0)  # rows in general do not sum to one
    assert ((W5 > 0).sum(axis=0) == k + 1).all()  # k distinct out-neighbours + self
    np.testing.assert_allclose(W5[W5 > 0], 1 / (k + 1), rtol=1e-6)
    np.testing.assert_allclose(np.diag(W5), 1 / (k + 1), rtol=1e-6)  # self, never picked twice
    # Reproducible and independent of call order / instance.
    W9 = t.matrix(9)
    fresh = topo.random_out_neighbours(n, k, seed=7)
    np.testing.assert_array_equal(W9, fresh.matrix(9))
    np.testing.assert_array_equal(W5, fresh.matrix(5))
    np.testing.assert_array_equal(W5, t.matrix(5))
    assert not np.array_equal(W5, t.matrix(6))
    assert not np.array_equal(W5, topo.random_out_neighbours(n, k, seed=8).matrix(5))


def test_random_out_neighbours_is_the_transpose_of_random_in_neighbours():
    # Both come from one draw per (seed, t): sending to the clients one would listen to.
    out, into = topo.random_out_neighbours(15, 3, seed=4), topo.random_in_neighbours(15, 3, seed=4)
    for rnd in (0, 3, 11):
        np.testing.assert_array_equal(out.matrix(rnd), into.matrix(rnd).T)


def test_random_out_neighbours_k_bounds():
    W = topo.random_out_neighbours(6, 5, seed=0).matrix(3)
    np.testing.assert_allclose(W, 1 / 6, rtol=1e-6)
    with pytest.raises(ValueError, match=r"random_out_neighbours needs 1 <= k <= .* = 5, got k=6"):
        topo.random_out_neighbours(6, 6, seed=0)
    with pytest.raises(ValueError, match="got k=0"):
        topo.random_out_neighbours(6, 0, seed=0)
    with pytest.raises(ValueError, match="nonnegative integer seed"):
        topo.random_out_neighbours(6, 2, seed=-1)


def test_directed_attribute():
    assert topo.ring(8).directed is False
    assert topo.torus(9).directed is False
    assert topo.fully_connected(5).directed is False
    assert topo.erdos_renyi(12, 0.5, seed=1).directed is False
    assert topo.exponential(12).directed is True
    assert topo.exponential(3).directed is False  # receives from i - 1 and i - 2 = i + 1
    assert all(topo.exponential(n).directed for n in range(4, 40))
    assert topo.directed_ring(5).directed is True
    assert topo.one_peer_exponential(8).directed is True
    assert topo.one_peer_exponential(2).directed is False  # the only shift is 1 = -1 mod 2
    assert topo.random_in_neighbours(10, 3, seed=0).directed is True
    assert topo.random_out_neighbours(10, 3, seed=0).directed is True
    assert topo.random_out_neighbours(4, 3, seed=0).directed is False  # complete every round
    W = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
    assert topo.from_matrix(W).directed is True
    assert topo.from_matrix(np.full((3, 3), 1 / 3)).directed is False


def test_satisfies():
    assert topo.satisfies("doubly", "row") and topo.satisfies("doubly", "column")
    assert topo.satisfies("doubly", "doubly")
    assert topo.satisfies("row", "row") and topo.satisfies("column", "column")
    assert not topo.satisfies("row", "column") and not topo.satisfies("column", "row")
    assert not topo.satisfies("row", "doubly") and not topo.satisfies("column", "doubly")
    with pytest.raises(ValueError, match="needed must be one of"):
        topo.satisfies("row", "left")
    with pytest.raises(ValueError, match="kind must be one of"):
        topo.satisfies("symmetric", "row")


def test_check_stochastic_accepts():
    for needed in ("row", "column", "doubly"):
        topo.check_stochastic(topo.ring(5), needed, "dfedavg")
        topo.check_stochastic(topo.directed_ring(5), needed, "dfedavg")
    topo.check_stochastic(topo.random_in_neighbours(8, 2, seed=0), "row", "dfedavg")
    topo.check_stochastic(topo.random_out_neighbours(8, 2, seed=0), "column", "dfedpgp")


def test_check_stochastic_rejects_with_the_fix():
    out = topo.random_out_neighbours(8, 2, seed=0)
    with pytest.raises(
        ValueError,
        match=r"dfedavg mixes with plain gossip .*row stochastic \(or doubly stochastic\).*"
        r"topology 'random_out_neighbours' is column stochastic: use push-sum .*"
        r"random_in_neighbours",
    ):
        topo.check_stochastic(out, "row", "dfedavg")
    into = topo.random_in_neighbours(8, 2, seed=0)
    with pytest.raises(
        ValueError,
        match=r"dfedpgp mixes with push-sum, which needs column stochastic .*mass each client "
        r"sends sums to one.*'random_in_neighbours' is row stochastic: .*random_out_neighbours",
    ):
        topo.check_stochastic(into, "column", "dfedpgp")
    with pytest.raises(ValueError, match=r"myalgo needs a doubly stochastic.*'custom' is row"):
        W = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.25, 0.75]])
        topo.check_stochastic(
            topo.from_matrix(W, "row", require_connected=False), "doubly", "myalgo"
        )
    with pytest.raises(ValueError, match="needed must be one of"):
        topo.check_stochastic(out, "Row", "dfedavg")
    with pytest.raises(TypeError, match="Topology, got ndarray"):
        topo.check_stochastic(out.matrix(0), "column", "dfedpgp")


def test_random_in_neighbours_k_bounds():
    W = topo.random_in_neighbours(6, 5, seed=0).matrix(3)
    np.testing.assert_allclose(W, 1 / 6, rtol=1e-6)
    with pytest.raises(ValueError, match=r"1 <= k <= num_clients - 1 = 5, got k=6"):
        topo.random_in_neighbours(6, 6, seed=0)
    with pytest.raises(ValueError, match="got k=0"):
        topo.random_in_neighbours(6, 0, seed=0)


@pytest.mark.parametrize("n", [2, 4, 8, 16, 64])
def test_one_peer_exponential_reaches_consensus(n):
    t = topo.one_peer_exponential(n)
    tau = math.ceil(math.log2(n))
    product = np.eye(n)
    for rnd in range(tau):
        product = t.matrix(rnd).astype(np.float64) @ product
    np.testing.assert_allclose(product, np.full((n, n), 1 / n), atol=1e-6)
    # Periodic with period tau.
    np.testing.assert_array_equal(t.matrix(1), t.matrix(1 + tau))


def test_one_peer_exponential_matrix_form():
    n, t = 10, 6  # tau = 4, shift 2^(6 mod 4) = 4
    W = topo.one_peer_exponential(n).matrix(t)
    shift = np.roll(np.eye(n), 1, axis=1)  # (P x)_i = x_{i+1}
    np.testing.assert_allclose(W, (np.eye(n) + np.linalg.matrix_power(shift, 4)) / 2)


def test_from_matrix():
    W = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
    t = topo.from_matrix(W, name="tri")
    assert (t.name, t.num_clients, t.stochastic, t.time_varying) == ("tri", 3, "doubly", False)
    np.testing.assert_allclose(t.matrix(0), W)
    assert topo.from_matrix(np.eye(3), require_connected=False).spectral_gap() == pytest.approx(0)


def test_matrix_returns_fresh_copy_and_checks_round():
    t = topo.ring(5)
    t.matrix(0)[0, 0] = 123.0
    assert t.matrix(0)[0, 0] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="nonnegative integer"):
        t.matrix(-1)


# ----------------------------------------------------------------------------- registry


def test_make_topology_all_names():
    assert set(topo.available_topologies()) == {
        "ring",
        "directed_ring",
        "torus",
        "exponential",
        "one_peer_exponential",
        "fully_connected",
        "erdos_renyi",
        "random_in_neighbours",
        "random_out_neighbours",
    }
    for name in topo.available_topologies():
        t = topo.make_topology(name, 16, seed=1)
        assert t.name == name and t.num_clients == 16
        _check_stochastic(t.matrix(2), t.stochastic)


def test_make_topology_defaults():
    W = topo.make_topology("random_in_neighbours", 30).matrix(0)
    assert ((W > 0).sum(axis=1) == 11).all()  # k defaults to 10
    W = topo.make_topology("random_in_neighbours", 4).matrix(0)
    assert ((W > 0).sum(axis=1) == 4).all()  # k defaults to N - 1 for small N
    with pytest.raises(ValueError, match="got k=4"):
        topo.make_topology("random_in_neighbours", 4, k=4)
    W = topo.make_topology("random_out_neighbours", 30).matrix(0)
    assert ((W > 0).sum(axis=0) == 11).all()  # k defaults to 10
    W = topo.make_topology("random_out_neighbours", 4, seed=3).matrix(0)
    np.testing.assert_allclose(W, 1 / 4, rtol=1e-6)  # k defaults to N - 1 for small N
    W = topo.make_topology("random_out_neighbours", 12, seed=3, k=2).matrix(5)
    np.testing.assert_array_equal(W, topo.random_out_neighbours(12, 2, seed=3).matrix(5))
    with pytest.raises(ValueError, match="random_out_neighbours needs.*got k=4"):
        topo.make_topology("random_out_neighbours", 4, k=4)
    assert topo.default_erdos_renyi_p(100) == pytest.approx(3 * math.log(100) / 100)
    for n in (10, 50, 100, 300):
        for seed in range(3):
            assert topo.make_topology("erdos_renyi", n, seed=seed).num_clients == n
    W = topo.make_topology("erdos_renyi", 30, p=1.0).matrix(0)
    np.testing.assert_allclose(W, 1 / 30, rtol=1e-6)


def test_make_topology_unknown_name():
    with pytest.raises(ValueError, match=r"Unknown topology 'rnig'. Did you mean 'ring'.*torus"):
        topo.make_topology("rnig", 10)


def test_make_topology_rejects_misplaced_args():
    with pytest.raises(ValueError, match="p only applies to 'erdos_renyi'"):
        topo.make_topology("ring", 10, p=0.3)
    with pytest.raises(
        ValueError, match="k only applies to 'random_in_neighbours' and 'random_out_neighbours'"
    ):
        topo.make_topology("directed_ring", 10, k=3)


# ----------------------------------------------------------------------------- validation


def test_validate_wrong_shape():
    with pytest.raises(ValueError, match=r"square 2-D array.*shape \(3, 4\)"):
        topo.validate_mixing_matrix(np.ones((3, 4)) / 4)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        topo.validate_mixing_matrix(np.ones(4))


def test_validate_non_finite():
    W = np.full((2, 2), 0.5)
    W[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*W\[1, 0\]"):
        topo.validate_mixing_matrix(W)


def test_validate_negative_entry():
    W = np.array([[0.5, 0.5, 0.0], [0.5, 0.75, -0.25], [0.0, -0.25, 1.25]])
    with pytest.raises(ValueError, match=r"nonnegative, got W\[1, 2\] = -0.25"):
        topo.validate_mixing_matrix(W)


def test_validate_row_sum():
    W = np.full((3, 3), 1 / 3)
    W[2, 2] = 0.5
    with pytest.raises(ValueError, match=r"every row to sum to one.*row 2 sums to 1.1666"):
        topo.validate_mixing_matrix(W, stochastic="row")
    with pytest.raises(ValueError, match="row 2"):
        topo.validate_mixing_matrix(W)  # doubly checks rows first


def test_validate_column_sum():
    # Row but not column stochastic; column sums 0.5, 1.25, 1.25.
    W = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.25, 0.75]])
    checked = topo.validate_mixing_matrix(W, stochastic="row", require_connected=False)
    assert checked.dtype == np.float64
    with pytest.raises(ValueError, match=r"every column to sum to one.*column 0 sums to 0.5\."):
        topo.validate_mixing_matrix(W, stochastic="column")
    with pytest.raises(ValueError, match="column 0"):
        topo.validate_mixing_matrix(W, stochastic="doubly")
    with pytest.raises(
        ValueError, match=r"push-sum needs them to sum to one.*row stochastic.*plain gossip"
    ):
        topo.validate_mixing_matrix(W, stochastic="column")
    # And the other way round: a column stochastic matrix checked as row stochastic.
    with pytest.raises(
        ValueError, match=r"row 0 sums to 0.5\. .*plain gossip needs.*column stochastic.*push-sum"
    ):
        topo.validate_mixing_matrix(W.T, stochastic="row")


def test_validate_disconnected():
    W = np.zeros((4, 4))
    W[:2, :2] = W[2:, 2:] = 0.5
    with pytest.raises(ValueError, match=r"not strongly connected.*2 of 4 clients.*client 2"):
        topo.validate_mixing_matrix(W)
    assert not topo.is_connected(W)
    topo.validate_mixing_matrix(W, require_connected=False)
    with pytest.raises(ValueError, match="not strongly connected"):
        topo.from_matrix(W)


def test_validate_weakly_but_not_strongly_connected():
    # Nobody listens to client 0.
    W = np.array([[0.5, 0.5], [0.0, 1.0]])
    assert not topo.is_connected(W)
    with pytest.raises(ValueError, match=r"client 0 never reaches 1 of 2 clients \(e.g. client 1"):
        topo.validate_mixing_matrix(W, stochastic="row")
    # Client 0 listens to nobody.
    W = np.array([[1.0, 0.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"from 1 of 2 clients never reaches client 0"):
        topo.validate_mixing_matrix(W, stochastic="row")


def test_validate_bad_stochastic_kind():
    with pytest.raises(ValueError, match="stochastic must be one of"):
        topo.validate_mixing_matrix(np.eye(2), stochastic="left")


@pytest.mark.parametrize("n", [1, 2, 10, 17, 20])
def test_torus_rejects_non_square(n):
    with pytest.raises(ValueError, match=f"perfect square side\\*side with side >= 3.*got {n}"):
        topo.torus(n)


def test_ring_rejects_small_n():
    with pytest.raises(ValueError, match="ring needs num_clients >= 3, got 2"):
        topo.ring(2)


def test_erdos_renyi_disconnected():
    with pytest.raises(ValueError, match=r"disconnected graph for n=50, p=0.01, seed=0.*larger p"):
        topo.erdos_renyi(50, 0.01, seed=0)


def test_erdos_renyi_bad_p():
    with pytest.raises(ValueError, match=r"p in \(0, 1\], got 1.5"):
        topo.erdos_renyi(10, 1.5, seed=0)
