"""Independent NumPy references, written straight from the update rules in ALGORITHMS.md.

The model is multinomial logistic regression, params {"w": [d, C], "b": [C]}, whose
cross-entropy gradient is written by hand here (no JAX), in float64.
"""

import numpy as np


def logits(params, x):
    return x @ params["w"] + params["b"]


def loss(params, x, y):
    z = logits(params, x)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def grad(params, x, y):
    z = logits(params, x)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    p /= len(y)
    return {"w": x.T @ p, "b": p.sum(axis=0)}


def add(a, b, scale=1.0):
    return {k: a[k] + scale * b[k] for k in a}


def norm(tree):
    return np.sqrt(sum(np.sum(v**2) for v in tree.values()))


def sam_grad(params, x, y, rho):
    g = grad(params, x, y)
    n = norm(g)
    return grad(add(params, g, rho / (n + 1e-12)), x, y)


def local_steps(params, xs, ys, lr, *, rho=None, momentum=None):
    """K steps of SGD / heavy-ball SGD / SAM+SGD from ``params`` on batches xs[k], ys[k]."""
    y = {k: v.copy() for k, v in params.items()}
    buf = {k: np.zeros_like(v) for k, v in params.items()}
    for xk, yk in zip(xs, ys):
        g = grad(y, xk, yk) if rho is None else sam_grad(y, xk, yk, rho)
        if momentum is not None:
            buf = {k: momentum * buf[k] + g[k] for k in g}
            g = buf
        y = add(y, g, -lr)
    return y


def clipped_gossip_round(models, w, bx, by, lr, clip_norm, **local_kwargs):
    """Each client trains, clips its update to ``clip_norm`` and sends ``x_i + clip(delta_i)``;
    then one gossip step."""
    sent = []
    for i, x in enumerate(models):
        y = local_steps(x, bx[i], by[i], lr, **local_kwargs)
        delta = {k: y[k] - x[k] for k in y}
        sent.append(add(x, delta, min(1.0, clip_norm / norm(delta))))
    return gossip(sent, w)


def fedavg_round(x, ids, bx, by, lr, server_lr=1.0, **local_kwargs):
    deltas = []
    for slot, _ in enumerate(ids):
        y = local_steps(x, bx[slot], by[slot], lr, **local_kwargs)
        deltas.append({k: y[k] - x[k] for k in x})
    mean = {k: np.mean([d[k] for d in deltas], axis=0) for k in x}
    return add(x, mean, server_lr)


def gossip(models, w):
    n = len(models)
    return [{k: sum(w[i, j] * models[j][k] for j in range(n)) for k in models[0]} for i in range(n)]


def decentralized_round(
    models, w, bx, by, lr, gossip_steps=1, order="train_then_gossip", **local_kwargs
):
    if order == "gossip_then_train":
        for _ in range(gossip_steps):
            models = gossip(models, w)
    models = [local_steps(m, bx[i], by[i], lr, **local_kwargs) for i, m in enumerate(models)]
    if order == "train_then_gossip":
        for _ in range(gossip_steps):
            models = gossip(models, w)
    return models


def ring_matrix(n):
    w = np.zeros((n, n))
    for i in range(n):
        for j in (i - 1, i, i + 1):
            w[i, j % n] = 1.0 / 3.0
    return w


def fedspeed_round(x, h, ids, bx, by, lr, rho, lam):
    """One FedSpeed round; ``h`` (a list over all N clients) is updated in place."""
    trained = []
    for slot, i in enumerate(ids):
        y = {k: v.copy() for k, v in x.items()}
        for xk, yk in zip(bx[slot], by[slot]):
            g = sam_grad(y, xk, yk, rho)
            g = {k: g[k] + lam * (y[k] - x[k] + h[i][k]) for k in g}
            y = add(y, g, -lr)
        h[i] = {k: h[i][k] + y[k] - x[k] for k in x}
        trained.append(y)
    return {
        k: np.mean([y[k] for y in trained], axis=0) + np.mean([hi[k] for hi in h], axis=0)
        for k in x
    }


def adam_server_round(x, m, v, t, ids, bx, by, lr, server_lr, b1=0.9, b2=0.999, eps=1e-8):
    """FedAvg with Adam on the pseudo-gradient x - mean(y) (FedAdam); returns (x, m, v)."""
    ys = [local_steps(x, bx[slot], by[slot], lr) for slot, _ in enumerate(ids)]
    g = {k: x[k] - np.mean([y[k] for y in ys], axis=0) for k in x}
    m = {k: b1 * m[k] + (1 - b1) * g[k] for k in x}
    v = {k: b2 * v[k] + (1 - b2) * g[k] ** 2 for k in x}
    mhat = {k: m[k] / (1 - b1**t) for k in x}
    vhat = {k: v[k] / (1 - b2**t) for k in x}
    return {k: x[k] - server_lr * mhat[k] / (np.sqrt(vhat[k]) + eps) for k in x}, m, v


def clipped_grad(params, x, y, clip_norm):
    """The mean over examples of each example's gradient clipped to ``clip_norm``."""
    total = {k: np.zeros_like(v) for k, v in params.items()}
    for b in range(len(y)):
        g = grad(params, x[b : b + 1], y[b : b + 1])
        total = add(total, g, min(1.0, clip_norm / norm(g)) / len(y))
    return total


def magnitude_prune(x, mask, sparsity):
    """The mask cutting the smallest |w| of the prunable "w" (already pruned ones first) to
    ``floor(sparsity * size)`` pruned coordinates; "b" is not prunable."""
    score = np.where(mask["w"] > 0, np.abs(x["w"]), -1.0).ravel()
    cut = int(np.floor(sparsity * score.size))
    keep = np.ones(score.size)
    keep[np.argsort(score, kind="stable")[:cut]] = 0.0
    return {"w": keep.reshape(x["w"].shape), "b": mask["b"]}


def fed_ltp_round(x, mask, ids, bx, by, lr, clip_norm, prune_to=None):
    """Clients in ``ids`` run masked SGD on per-example clipped gradients from ``x``; the
    server averages their models, keeps the mask, and prunes to ``prune_to`` if given."""
    models = []
    for slot, _ in enumerate(ids):
        y = {k: v.copy() for k, v in x.items()}
        for xk, yk in zip(bx[slot], by[slot]):
            g = clipped_grad(y, xk, yk, clip_norm)
            y = {k: y[k] - lr * mask[k] * g[k] for k in y}
        models.append(y)
    new = {k: np.mean([m[k] for m in models], axis=0) * mask[k] for k in x}
    if prune_to is not None:
        mask = magnitude_prune(new, mask, prune_to)
        new = {k: new[k] * mask[k] for k in new}
    return new, mask


def masked_sam_grad(params, x, y, rho, keys):
    """The SAM gradient with the ascent step on (and its norm over) ``keys`` only."""
    g = grad(params, x, y)
    n = np.sqrt(sum(np.sum(g[k] ** 2) for k in keys))
    lifted = {k: params[k] + (rho * g[k] / (n + 1e-12) if k in keys else 0.0) for k in params}
    return grad(lifted, x, y)


def alternating_steps(y, xs, ys, head_lr, body_lr, head_steps, personal, rho=None):
    """``head_steps`` SGD steps on the ``personal`` keys, then the rest of the batches on the
    other keys (SAM over them alone when ``rho`` is given)."""
    y = {k: v.copy() for k, v in y.items()}
    shared = [k for k in y if k not in personal]
    for step, (xk, yk) in enumerate(zip(xs, ys)):
        keys, lr = (personal, head_lr) if step < head_steps else (shared, body_lr)
        use_sam = rho is not None and step >= head_steps
        g = masked_sam_grad(y, xk, yk, rho, keys) if use_sam else grad(y, xk, yk)
        y = {k: y[k] - lr * g[k] if k in keys else y[k] for k in y}
    return y


def dfedalt_round(models, w, bx, by, head_lr, body_lr, head_steps, personal, rho=None):
    """Gossip of the shared keys first, then each client's head phase and body phase."""
    mixed = gossip(models, w)
    out = []
    for i, m in enumerate(models):
        start = {k: (m[k] if k in personal else mixed[i][k]) for k in m}
        out.append(
            alternating_steps(start, bx[i], by[i], head_lr, body_lr, head_steps, personal, rho)
        )
    return out


def personalized_server_round(x, heads, ids, bx, by, train, personal):
    """FedPer / FedRep: client ``i`` trains ``(shared of x, heads[i])`` with ``train``; the
    server keeps its head and averages the shared parts of the cohort."""
    heads = [dict(h) for h in heads]
    trained = []
    for slot, i in enumerate(ids):
        start = {k: (heads[i][k] if k in personal else x[k]) for k in x}
        y = train(start, bx[slot], by[slot])
        heads[i] = {k: y[k] for k in personal}
        trained.append(y)
    new = {k: (x[k] if k in personal else np.mean([y[k] for y in trained], axis=0)) for k in x}
    return new, heads


def push_sum_round(models, weights, p, bx, by, head_lr, body_lr, head_steps, personal, push):
    """DFedPGP: every client trains its de-biased model (head, then body), then pushes its
    shared keys and weight over the column-stochastic ``p``; returns the de-biased models
    and the weights after the push. ``push`` is "update" (x_i = w_i z_i + delta_i) or
    "model" (x_i = w_i y_i)."""
    n = len(models)
    trained = [
        alternating_steps(m, bx[i], by[i], head_lr, body_lr, head_steps, personal)
        for i, m in enumerate(models)
    ]
    shared = [k for k in models[0] if k not in personal]
    values = []
    for z, y, w in zip(models, trained, weights):
        if push == "update":
            values.append({k: w * z[k] + (y[k] - z[k]) for k in shared})
        else:
            values.append({k: w * y[k] for k in shared})
    new_weights = [sum(p[i, j] * weights[j] for j in range(n)) for i in range(n)]
    out = []
    for i in range(n):
        mixed = {k: sum(p[i, j] * values[j][k] for j in range(n)) / new_weights[i] for k in shared}
        out.append({**{k: trained[i][k] for k in personal}, **mixed})
    return out, new_weights
