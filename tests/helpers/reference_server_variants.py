"""Independent NumPy references for three server-based FL algorithms: SCAFFOLD, FedDyn, FedProx.

Each is written straight from its paper's update rule, per client, with plain Python loops over
the clients of the cohort and over the local steps, in float64 and without JAX, so that the JAX
implementations can be tested against them. The model and its hand-written gradient are the
multinomial logistic regression of ``tests/helpers/numpy_reference.py`` (params
{"w": [d, C], "b": [C]}).

Shared conventions: N clients and a server model ``x`` (a dict of arrays). In a round the cohort
``ids`` (a list of distinct client ids) trains; slot ``s`` of the cohort (client ``ids[s]``) uses
the batches ``bx[s][k], by[s][k]`` for ``k = 0..K-1`` (``bx``: [m, K, B, d], ``by``: int
[m, K, B]); ``lr`` is the local learning rate and ``g_i(.)`` the minibatch gradient of the step's
batch. Every function returns the new server state, the per-client state included (new lists;
the inputs are not modified), and keeps the state of the clients outside the cohort, so rounds
with changing cohorts can be chained.

Not a test module (no ``test_`` prefix); ``_self_check()`` checks a few identities by hand:
``python -c "from tests.helpers import reference_server_variants as r; r._self_check()"``.
"""

import numpy as np

from tests.helpers import numpy_reference as ref


def _copy(tree):
    return {k: np.array(v, dtype=np.float64, copy=True) for k, v in tree.items()}


def _zeros_like(tree):
    return {k: np.zeros_like(np.asarray(v, dtype=np.float64)) for k, v in tree.items()}


def _sub(a, b):
    return {k: a[k] - b[k] for k in a}


def _mean(trees):
    return {k: np.mean([t[k] for t in trees], axis=0) for k in trees[0]}


def scaffold_round(x, c, c_clients, ids, bx, by, lr, server_lr=1.0):
    """One SCAFFOLD round (Karimireddy et al., ICML 2020, Algorithm 1, option II).

    For each client ``i = ids[s]`` of the cohort S, from ``y = x``, K steps

        y <- y - lr * (g_i(y) + c - c_i),

    then (option II)

        c_i+ = c_i - c + (x - y) / (K * lr),   Delta y_i = y - x,   Delta c_i = c_i+ - c_i,
        c_i <- c_i+.

    Server, with eta_g = ``server_lr``:

        x <- x + eta_g * mean_{i in S} Delta y_i,
        c <- c + (|S| / N) * mean_{i in S} Delta c_i      (= c + (1/N) sum_{i in S} Delta c_i).

    ``c`` is the server control variate and ``c_clients`` the list of the N clients' control
    variates (all zeros at the start). Returns ``(x, c, c_clients)``, a new list.
    """
    n = len(c_clients)
    c_clients = [_copy(ci) for ci in c_clients]
    dys, dcs = [], []
    for slot, i in enumerate(ids):
        y = _copy(x)
        steps = 0
        for xk, yk in zip(bx[slot], by[slot]):
            g = ref.grad(y, xk, yk)
            y = {k: y[k] - lr * (g[k] + c[k] - c_clients[i][k]) for k in y}
            steps += 1
        ci_new = {k: c_clients[i][k] - c[k] + (x[k] - y[k]) / (steps * lr) for k in x}
        dys.append(_sub(y, x))
        dcs.append(_sub(ci_new, c_clients[i]))
        c_clients[i] = ci_new
    new_x = ref.add(x, _mean(dys), server_lr)
    new_c = ref.add(c, _mean(dcs), len(ids) / n)
    return new_x, new_c, c_clients


def feddyn_round(x, h, grads_prev, ids, bx, by, lr, alpha):
    """One FedDyn round (Acar et al., ICLR 2021, Algorithm 1).

    ``x`` is the server model theta^{t-1}, ``h`` the server state (zeros at the start) and
    ``grads_prev`` the list of the N clients' gradient corrections grad_prev_i (the paper's
    nabla L_i(theta_i^{t-1}), zeros at the start). Client ``i = ids[s]`` of the cohort S
    minimizes approximately

        L_i(theta) - <grad_prev_i, theta> + (alpha / 2) ||theta - x||^2

    with K SGD steps from theta = x:

        theta <- theta - lr * (g_i(theta) - grad_prev_i + alpha * (theta - x)),

    giving theta_i, then

        grad_prev_i <- grad_prev_i - alpha * (theta_i - x).

    Server:

        h <- h - alpha * (1/N) * sum_{i in S} (theta_i - x),
        x <- (1/|S|) * sum_{i in S} theta_i - (1/alpha) * h     (with the new h).

    Returns ``(x, h, grads_prev)``, a new list.
    """
    n = len(grads_prev)
    grads_prev = [_copy(gp) for gp in grads_prev]
    thetas = []
    for slot, i in enumerate(ids):
        theta = _copy(x)
        for xk, yk in zip(bx[slot], by[slot]):
            g = ref.grad(theta, xk, yk)
            theta = {
                k: theta[k] - lr * (g[k] - grads_prev[i][k] + alpha * (theta[k] - x[k]))
                for k in theta
            }
        grads_prev[i] = {k: grads_prev[i][k] - alpha * (theta[k] - x[k]) for k in x}
        thetas.append(theta)
    new_h = {k: h[k] - alpha * sum(t[k] - x[k] for t in thetas) / n for k in x}
    mean_theta = _mean(thetas)
    new_x = {k: mean_theta[k] - new_h[k] / alpha for k in x}
    return new_x, new_h, grads_prev


def fedprox_round(x, ids, bx, by, lr, mu, server_lr=1.0):
    """One FedProx round (Li et al., MLSys 2020).

    Client ``i = ids[s]`` of the cohort S runs K SGD steps from y = x on
    L_i(y) + (mu / 2) ||y - x||^2:

        y <- y - lr * (g_i(y) + mu * (y - x)),

    giving y_i. Server (FedAvg; the paper's rule is ``server_lr`` = 1, i.e. x <- mean y_i):

        x <- x + server_lr * mean_{i in S} (y_i - x).

    Returns the new ``x``.
    """
    deltas = []
    for slot, _ in enumerate(ids):
        y = _copy(x)
        for xk, yk in zip(bx[slot], by[slot]):
            g = ref.grad(y, xk, yk)
            y = {k: y[k] - lr * (g[k] + mu * (y[k] - x[k])) for k in y}
        deltas.append(_sub(y, x))
    return ref.add(x, _mean(deltas), server_lr)


def _toy(rng, n_clients=6, d=5, classes=3):
    """A toy problem: per-client shifted Gaussian inputs and a random initial model."""
    shift = rng.normal(size=(n_clients, d))
    x0 = {"w": 0.1 * rng.normal(size=(d, classes)), "b": 0.1 * rng.normal(size=classes)}

    def batches(ids, k, b):
        bx = np.stack([shift[i] + rng.normal(size=(k, b, d)) for i in ids])
        by = rng.integers(0, classes, size=(len(ids), k, b))
        return bx, by

    return x0, batches


def _finite(*trees):
    return all(np.all(np.isfinite(v)) for t in trees for v in t.values())


def _self_check(seed=0):
    """Checks by hand (not a pytest test): FedProx with mu = 0 is ``ref.fedavg_round``; FedDyn
    and SCAFFOLD stay finite over 3 rounds of random cohorts; SCAFFOLD with K = 1 gives
    c_i+ = g_i(x) (option II after one step), to 1e-10."""
    rng = np.random.default_rng(seed)
    n, m, k, b, lr = 6, 3, 4, 8, 0.1
    x0, batches = _toy(rng, n_clients=n)
    results = {}

    # 1. FedProx with mu = 0 equals FedAvg (server_lr 1 and 0.7).
    ids = list(rng.choice(n, size=m, replace=False))
    bx, by = batches(ids, k, b)
    err = 0.0
    for slr in (1.0, 0.7):
        prox = fedprox_round(x0, ids, bx, by, lr, mu=0.0, server_lr=slr)
        avg = ref.fedavg_round(x0, ids, bx, by, lr, server_lr=slr)
        err = max(err, max(np.max(np.abs(prox[key] - avg[key])) for key in x0))
    assert err < 1e-12, err
    results["fedprox(mu=0) vs fedavg max abs diff"] = err

    # 2. FedDyn and SCAFFOLD over 3 rounds with random cohorts stay finite (and state is kept).
    x, h, gp = _copy(x0), _zeros_like(x0), [_zeros_like(x0) for _ in range(n)]
    xs, c, cc = _copy(x0), _zeros_like(x0), [_zeros_like(x0) for _ in range(n)]
    for _ in range(3):
        ids = list(rng.choice(n, size=m, replace=False))
        bx, by = batches(ids, k, b)
        cc_before = [_copy(ci) for ci in cc]
        gp_before = [_copy(g) for g in gp]
        x, h, gp = feddyn_round(x, h, gp, ids, bx, by, lr, alpha=0.1)
        xs, c, cc = scaffold_round(xs, c, cc, ids, bx, by, lr, server_lr=1.0)
        assert _finite(x, h, *gp) and _finite(xs, c, *cc)
        for i in set(range(n)) - set(ids):
            assert all(np.array_equal(cc[i][key], cc_before[i][key]) for key in x0)
            assert all(np.array_equal(gp[i][key], gp_before[i][key]) for key in x0)
        # SCAFFOLD invariant with these zero-start states: c = mean over all N of c_i.
        assert max(np.max(np.abs(c[key] - _mean(cc)[key])) for key in x0) < 1e-12
    results["feddyn/scaffold 3 rounds finite"] = True

    # 3. SCAFFOLD with K = 1: c_i+ = g_i(x), from the nonzero c, c_i of the rounds above.
    ids = list(rng.choice(n, size=m, replace=False))
    bx1, by1 = batches(ids, 1, b)
    _, _, cc1 = scaffold_round(xs, c, cc, ids, bx1, by1, lr)
    err = 0.0
    for slot, i in enumerate(ids):
        g = ref.grad(xs, bx1[slot][0], by1[slot][0])
        err = max(err, max(np.max(np.abs(cc1[i][key] - g[key])) for key in x0))
    assert err < 1e-10, err
    results["scaffold K=1 |c_i+ - g_i(x)| max"] = err

    for name, value in results.items():
        print(f"{name}: {value}")
    print("self-check passed")
    return results


if __name__ == "__main__":
    _self_check()
