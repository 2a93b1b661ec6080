"""The zeroth-order family: tuning pre-trained models that clients can only query.

Every algorithm here is a server-based :func:`~fedjax_lab.algorithms.rounds.compose` of
pieces the other families use too (client sampling as for FedAvg, the server mean, the
no-gradient hook ``gradient=None``, algorithm-reported bytes):

* :func:`fed_bbpt` (Fed-BBPT): the pre-trained model is an API, a
  :func:`~fedjax_lab.black_box.black_box` forward function; clients train a prompt
  generator (:class:`~fedjax_lab.models.PromptedModel`, the model sees ``x + p(x)``) with
  zeroth-order estimates of the black-box loss, and the server averages the generators.
  ``white_box=True`` trains the same prompt by backpropagation through an open model:
  the white-box reference.
* :func:`fes` (FES-PIT, FES-PTZO): split learning of a ViT
  (:class:`~fedjax_lab.models.SplitViT`). The client holds the input embedding and the
  classifier, the server the frozen transformer body; embeddings and classifiers are
  averaged each round. FES-PIT backpropagates through the body: per step the tokens go up,
  the body's output comes down, its gradient goes up and the tokens' gradient comes down
  (4 tensors at the cut). FES-PTZO makes the body a black box: the client estimates the
  tokens' gradient from forward passes (:func:`split_zo_gradient`): the tokens go up, the
  body's output at them and at ``q`` perturbed copies come down (``q + 2`` tensors for the
  forward difference, ``2q + 2`` for two-point; the server regenerates the perturbations
  from the step's key). Bytes count those tensors (``activations_sent``), and the averaged
  client parts (``models_sent``).
* :func:`fedkseed` (FedKSeed): every local step is :func:`~fedjax_lab.transforms.kseed_sgd`
  over a pool of ``K`` seeds; a client sends only its (seed, scalar) pairs
  (:class:`~fedjax_lab.algorithms.rounds.Messages`); the server replays them on the
  shared start point, ``x <- x + sum_i w_i sum_k c_ik z_{j_ik}``, and broadcasts them, so
  every client rebuilds the same model (:func:`rebuild`). Bytes count the pairs.

The config section ``zo`` holds their settings; a key an algorithm does not use stays
``None`` (setting it is an error). ``config.model = "pretrained"`` tunes ``zo.model``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from fedjax_lab import config as config_lib
from fedjax_lab import data
from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab import models
from fedjax_lab import pretrained
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import configured
from fedjax_lab.algorithms import rounds
from fedjax_lab.algorithms import server
from fedjax_lab.black_box import black_box
from fedjax_lab.transforms import zeroth_order

ESTIMATORS = zeroth_order.ESTIMATORS + ("spsa_gc",)

FIELDS = (
    config_lib.Field(
        "zo.model",
        None,
        "the pre-trained model tuned when model=pretrained: a shipped name (digits_cnn, "
        "digits_vit) or a checkpoint directory (fedjax_lab.pretrained.save); None = the "
        "algorithm's (digits_cnn for fed_bbpt, digits_vit for fes_pit and fes_ptzo)",
        str,
    ),
    config_lib.Field(
        "zo.estimator",
        None,
        "two_point, forward, or spsa_gc (fed_bbpt); None = the algorithm's (two_point; "
        "forward for fes_ptzo)",
        str,
    ),
    config_lib.Field(
        "zo.directions", None, "gaussian, sphere or rademacher; None = gaussian where used", str
    ),
    config_lib.Field(
        "zo.mu", None, "smoothing radius (SPSA's c, FedKSeed's eps); None = the algorithm's", float
    ),
    config_lib.Field(
        "zo.num_directions", None, "q per step; None = 4 (fed_bbpt), 1 (fes_ptzo)", int
    ),
    config_lib.Field("zo.spsa_alpha", None, "spsa_gc: gain a_k = lr / (k + 1)^alpha", float),
    config_lib.Field("zo.spsa_gamma", None, "spsa_gc: radius c_k = mu / (k + 1)^gamma", float),
    config_lib.Field("zo.spsa_beta", None, "spsa_gc: momentum of the correction", float),
    config_lib.Field("zo.seeds", None, "fedkseed: K, the seed pool; None = 4096", int),
    config_lib.Field(
        "zo.prompt_hidden", None, "fed_bbpt: the generator's bottleneck width (0 = none)", int
    ),
    config_lib.Field(
        "zo.white_box",
        None,
        "fed_bbpt: train the prompt by backpropagation through an open model (the white-box "
        "reference) instead of zeroth-order estimates",
        bool,
    ),
)

_BBPT_DEFAULTS = {
    "dataset": "digits_inverted",
    "model": "pretrained",
    "local.learning_rate": 0.3,
    "zo.model": "digits_cnn",
    "zo.estimator": "two_point",
    "zo.directions": "gaussian",
    "zo.mu": 0.01,
    "zo.num_directions": 4,
    "zo.spsa_alpha": 0.602,
    "zo.spsa_gamma": 0.101,
    "zo.spsa_beta": 0.9,
    "zo.prompt_hidden": 0,
    "zo.white_box": False,
}
_FES_DEFAULTS = {"dataset": "digits_high", "model": "pretrained", "zo.model": "digits_vit"}
_PTZO_DEFAULTS = {
    **_FES_DEFAULTS,
    "zo.estimator": "forward",
    "zo.directions": "gaussian",
    "zo.mu": 0.01,
    "zo.num_directions": 1,
}
_KSEED_DEFAULTS = {
    "local.learning_rate": 5e-4,
    "zo.seeds": 4096,
    "zo.mu": 5e-4,
    "zo.directions": "gaussian",
}


def _check_unused(c: ml_collections.ConfigDict, defaults: dict[str, Any]) -> None:
    """A ``zo`` key the algorithm does not use must stay None."""
    for field in FIELDS:
        name = field.key.split(".")[1]
        if field.key not in defaults and c.zo[name] is not None:
            if field.key == "zo.model" and c.model == "pretrained":
                continue
            used = sorted(k for k in defaults if k.startswith("zo."))
            raise ValueError(
                f"{field.key}={c.zo[name]!r} does not apply to {c.algorithm}, which uses "
                f"{', '.join(used) or 'no zo key'}."
            )


def _load(c: ml_collections.ConfigDict) -> pretrained.Pretrained:
    if c.zo.model is None:
        raise ValueError(
            f"model='pretrained' needs zo.model, the pre-trained model {c.algorithm} tunes: "
            f"one of {pretrained.available()} or a checkpoint directory."
        )
    return _cached_load(c.zo.model)


@functools.lru_cache(maxsize=8)
def _cached_load(name: str) -> pretrained.Pretrained:
    return pretrained.load(name)


def _check_input(pre: pretrained.Pretrained, input_shape: tuple, dataset: str) -> None:
    if tuple(input_shape) != pre.input_shape:
        raise ValueError(
            f"The pre-trained model {pre.name!r} takes inputs of shape {pre.input_shape}; "
            f"dataset {dataset!r} has {tuple(input_shape)}."
        )


def _check_classes(pre: pretrained.Pretrained, num_classes: int, c) -> None:
    if num_classes != pre.num_classes:
        raise ValueError(
            f"{c.algorithm} keeps the label set of the pre-trained model {pre.name!r} "
            f"({pre.num_classes} classes); dataset {c.dataset!r} has {num_classes}. Choose a "
            "task with the same labels (a domain shift such as digits_inverted)."
        )


def local_zo_optimizer(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The zeroth-order local optimizer of the ``zo`` and ``local`` sections:
    ``chain(zo_gradient(mu, q), local_sgd)``, or SPSA-GC with gain ``local.learning_rate``."""
    z = c.zo
    if z.estimator not in ESTIMATORS:
        raise ValueError(f"Unknown zo.estimator {z.estimator!r}; expected one of {ESTIMATORS}.")
    if z.estimator == "spsa_gc":
        return zeroth_order.spsa_gc(
            c.local.learning_rate,
            z.mu,
            num_directions=z.num_directions,
            alpha=z.spsa_alpha,
            gamma=z.spsa_gamma,
            beta=z.spsa_beta,
        )
    estimate = zeroth_order.zo_gradient(
        z.mu, z.num_directions, estimator=z.estimator, distribution=z.directions
    )
    return optax.chain(estimate, configured.local_sgd(c))


# ---------------------------------------------------------------------------- fed_bbpt


def prompted_model(
    c: ml_collections.ConfigDict, num_classes: int, input_shape: tuple, key: jax.Array
):
    """Fed-BBPT's model: the prompt generator around the frozen pre-trained ``zo.model``,
    reachable only through its forward function unless ``zo.white_box``."""
    pre = _load(c)
    _check_input(pre, input_shape, c.dataset)
    _check_classes(pre, num_classes, c)
    frozen = lambda x: pre.model.apply({"params": pre.params}, x)
    if not c.zo.white_box:
        frozen = black_box(frozen, f"the pre-trained model {pre.name!r}")
    module = models.PromptedModel(frozen, c.zo.prompt_hidden)
    return module, models.init_params(module, input_shape, key)


def fed_bbpt(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    white_box: bool = False,
    name: str = "fed_bbpt",
    **kwargs: Any,
) -> base.Algorithm:
    """Fed-BBPT: FedAvg of prompt generators trained without gradients.

    Args:
      loss_fn: the loss of the prompt generator's parameters through the frozen model
        (:class:`~fedjax_lab.models.PromptedModel`, the model a black box).
      local_optimizer: a zeroth-order optimizer (:func:`local_zo_optimizer`); with
        ``white_box`` any optimizer, fed true gradients.
      num_clients, clients_per_round: N and m.
      white_box: backpropagate through the model instead (it must not be a black box).
      **kwargs: the other settings of :func:`~fedjax_lab.algorithms.server.fedavg`.
    """
    gradient = gradients.batch_gradient if white_box else None
    return server.fedavg(
        loss_fn,
        local_optimizer,
        num_clients=num_clients,
        clients_per_round=clients_per_round,
        gradient=gradient,
        name=name,
        **kwargs,
    )


def _build_fed_bbpt(c, loss_fn):
    _check_unused(c, _BBPT_DEFAULTS)
    optimizer = configured.local_sgd(c) if c.zo.white_box else local_zo_optimizer(c)
    return fed_bbpt(loss_fn, optimizer, white_box=c.zo.white_box, **configured.server_kwargs(c))


# ---------------------------------------------------------------------------- fes


def split_model(c: ml_collections.ConfigDict, num_classes: int, input_shape: tuple, key: jax.Array):
    """FES's client model: ``zo.model``'s (a ViT's) embedding and classifier norm, a new
    ``head`` for the dataset's classes, around the server's frozen body (a black box for
    ``fes_ptzo``)."""
    module, pre = _split_module(c, num_classes, input_shape)
    params = models.init_params(module, input_shape, key)
    return module, {**params, "embedding": pre.params["embedding"], "norm": pre.params["norm"]}


def _split_module(c, num_classes: int, input_shape: tuple):
    """The :class:`~fedjax_lab.models.SplitViT` around ``zo.model``'s body, and the
    pre-trained model."""
    pre = _load(c)
    _check_input(pre, input_shape, c.dataset)
    if not isinstance(pre.model, models.ViT):
        raise ValueError(
            f"Split tuning cuts a ViT; the pre-trained model {pre.name!r} is a "
            f"{type(pre.model).__name__}."
        )
    vit, body_params = pre.model, pre.params["body"]
    body = lambda h: vit.apply({"params": {"body": body_params}}, h, method=models.ViT.encode)
    if c.algorithm == "fes_ptzo":
        body = black_box(body, f"the server's transformer body of {pre.name!r}")
    return models.SplitViT(num_classes, body, vit.patch_size, vit.dim), pre


def split_zo_gradient(
    model: models.SplitViT,
    mu: float,
    num_directions: int = 1,
    *,
    estimator: str = "forward",
    distribution: str = "gaussian",
) -> gradients.GradientFn:
    """FES-PTZO's gradient hook: exact gradients of the client's parts, with the tokens'
    gradient through the server's body estimated from forward passes.

    With example ``b``'s tokens ``h_b = embed(x_b)`` and its classifier loss
    ``l_b(h_b) = ce(classify(body(h_b)), y_b)``, the batch loss is ``(1/B) sum_b l_b``. The
    classifier's gradient is exact. The tokens' gradient is the zeroth-order estimate
    ``(1/B)(1/q) sum_k (l_b(h_b + mu u_kb) - l_b(h_b)) / mu * u_kb`` (or two-point), each
    example's slope from its own loss (the client computes every example's loss, so the
    estimate's dimension is one example's tokens, not the batch's); ``u_k =
    direction(key, k)`` over the batch's tokens. The embedding's gradient is its
    vector-Jacobian product with that estimate. ``body`` is only ever evaluated: one
    forward pass of the batch, plus one per direction (two for two-point).
    """
    zeroth_order._check(mu, num_directions)
    zeroth_order._check_estimator(estimator)
    zeroth_order._check_distribution(distribution)

    def example_losses(params, tokens, labels):
        logits = model.apply({"params": params}, tokens, method=models.SplitViT.classify)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    def gradient(loss_fn, params, batch, key):
        del loss_fn  # the loss is rebuilt from the model's parts
        embed = lambda p: model.apply({"params": p}, batch["x"], method=models.SplitViT.embed)
        tokens, embed_vjp = jax.vjp(embed, params)
        labels = batch["y"]
        losses, tail_vjp = jax.vjp(lambda p: example_losses(p, model.body(tokens), labels), params)
        (tail_grads,) = tail_vjp(jnp.full_like(losses, 1.0 / losses.shape[0]))
        u = jax.vmap(lambda k: zeroth_order.direction(key, k, tokens.size, distribution))(
            jnp.arange(num_directions)
        ).reshape((num_directions, *tokens.shape))
        at = jax.vmap(lambda h: example_losses(params, model.body(h), labels))
        if estimator == "two_point":
            slopes = (at(tokens + mu * u) - at(tokens - mu * u)) / (2 * mu)
        else:
            slopes = (at(tokens + mu * u) - losses) / mu
        token_grads = jnp.einsum("kb,kb...->b...", slopes, u) / (num_directions * losses.shape[0])
        (embed_grads,) = embed_vjp(token_grads.astype(tokens.dtype))
        return jnp.mean(losses), jax.tree.map(jnp.add, tail_grads, embed_grads)

    return gradient


def tensors_per_step(zeroth: bool, estimator: str = "forward", num_directions: int = 1) -> int:
    """The activation and gradient tensors one FES local step moves across the cut."""
    if not zeroth:
        return 4  # tokens up, body output down, its gradient up, the tokens' gradient down
    return 2 + (2 * num_directions if estimator == "two_point" else num_directions)


def fes(
    loss_fn: local.LossFn,
    local_optimizer: optax.GradientTransformation,
    *,
    num_clients: int,
    clients_per_round: int,
    tensors: int,
    activation_bytes: int,
    gradient: gradients.GradientFn = gradients.batch_gradient,
    name: str = "fes_pit",
    **kwargs: Any,
) -> base.Algorithm:
    """FES: FedAvg of split-learning clients' embeddings and classifiers.

    Args:
      loss_fn: the loss of the client's parts through the server's body.
      local_optimizer: the client's optimizer.
      tensors, activation_bytes: the tensors each local step moves across the cut
        (:func:`tensors_per_step`) and the bytes of one (``batch x tokens x dim x 4``).
      gradient: :func:`~fedjax_lab.gradients.batch_gradient` (FES-PIT, backpropagation
        through the body) or :func:`split_zo_gradient` (FES-PTZO).
      **kwargs: the other settings of :func:`~fedjax_lab.algorithms.rounds.compose`.
    """
    return server.fedavg(
        loss_fn,
        local_optimizer,
        num_clients=num_clients,
        clients_per_round=clients_per_round,
        gradient=gradient,
        name=name,
        step_messages={"activations_sent": (tensors, activation_bytes)},
        **kwargs,
    )


def _build_fes(c, loss_fn, zeroth: bool):
    _check_unused(c, _PTZO_DEFAULTS if zeroth else _FES_DEFAULTS)
    num_classes, input_shape = data.task_shape(c.dataset)
    module, _ = _split_module(c, num_classes, input_shape)  # its structure, no parameters
    tokens = (input_shape[0] // module.patch_size) * (input_shape[1] // module.patch_size)
    kwargs = dict(tensors=tensors_per_step(False), gradient=gradients.batch_gradient)
    if zeroth:
        z = c.zo
        kwargs = dict(
            tensors=tensors_per_step(True, z.estimator, z.num_directions),
            gradient=split_zo_gradient(
                module, z.mu, z.num_directions, estimator=z.estimator, distribution=z.directions
            ),
        )
    return fes(
        loss_fn,
        configured.local_sgd(c),
        activation_bytes=c.local.batch_size * tokens * module.dim * 4,
        name=c.algorithm,
        **kwargs,
        **configured.server_kwargs(c),
    )


# ---------------------------------------------------------------------------- fedkseed


def kseed_model(c: ml_collections.ConfigDict, num_classes: int, input_shape: tuple, key):
    """FedKSeed's starting point with ``model=pretrained``: ``zo.model`` as it is."""
    del key
    pre = _load(c)
    _check_input(pre, input_shape, c.dataset)
    _check_classes(pre, num_classes, c)
    return pre.model, pre.params


def kseed_messages(pool_seed: int, distribution: str = "gaussian") -> rounds.Messages:
    """FedKSeed's messages: each client's (seed, ``-lr g``) pairs from its
    :func:`~fedjax_lab.transforms.kseed_sgd` state; decoded by replaying them."""

    def encode(states, start, trained):
        del start, trained
        (state,) = states
        return {"seeds": state.seeds, "coefficients": state.coefficients}

    def decode(messages, weights, start, step_scale):
        coefficients = messages["coefficients"] * (weights[:, None] * step_scale)
        return zeroth_order.kseed_replay(
            pool_seed, messages["seeds"], coefficients, start, distribution
        )

    return rounds.Messages(encode, decode)


def rebuild(
    params: Any, broadcast: rounds.Broadcast, *, pool_seed: int, distribution: str = "gaussian"
) -> Any:
    """A client's rebuild of FedKSeed's new model from the one before the round and the
    round's broadcast pairs (``State.communication``): bitwise the server's."""
    update = kseed_messages(pool_seed, distribution).decode(
        broadcast.messages, broadcast.weights, params, broadcast.step_scale
    )
    return optax.apply_updates(params, update)


def fedkseed(
    loss_fn: local.LossFn,
    *,
    learning_rate: float,
    num_clients: int,
    clients_per_round: int,
    steps: int,
    num_seeds: int = 4096,
    eps: float = 5e-4,
    pool_seed: int = 0,
    distribution: str = "gaussian",
    name: str = "fedkseed",
    **kwargs: Any,
) -> base.Algorithm:
    """FedKSeed (module docstring): ``steps`` local ZO-SGD steps over a pool of
    ``num_seeds`` seeds; only (seed, scalar) pairs travel.

    Other keyword arguments are those of :func:`~fedjax_lab.algorithms.rounds.compose`
    (not ``server_optimizer``: the server replays the pairs as they are).
    """
    optimizer = zeroth_order.kseed_sgd(
        learning_rate,
        num_seeds=num_seeds,
        steps=steps,
        eps=eps,
        pool_seed=pool_seed,
        distribution=distribution,
    )
    return server.fedavg(
        loss_fn,
        optimizer,
        num_clients=num_clients,
        clients_per_round=clients_per_round,
        gradient=None,
        steps=steps,
        name=name,
        messages=kseed_messages(pool_seed, distribution),
        **kwargs,
    )


def _build_fedkseed(c, loss_fn):
    _check_unused(c, _KSEED_DEFAULTS)
    if c.server.optimizer != "sgd" or c.server.learning_rate != 1.0:
        raise ValueError(
            "fedkseed's server replays the clients' pairs as they are (so every client rebuilds "
            f"its model): expected server.optimizer='sgd' and server.learning_rate=1.0, got "
            f"{c.server.optimizer!r} and {c.server.learning_rate!r}."
        )
    kwargs = configured.server_kwargs(c)
    del kwargs["server_optimizer"]
    return fedkseed(
        loss_fn,
        learning_rate=c.local.learning_rate,
        steps=c.local.steps,
        num_seeds=c.zo.seeds,
        eps=c.zo.mu,
        pool_seed=c.seed,
        distribution=c.zo.directions,
        **kwargs,
    )


FED_BBPT = base.AlgorithmSpec(
    name="fed_bbpt",
    summary="server; a prompt generator for a black-box pre-trained model, ZO-trained",
    build=_build_fed_bbpt,
    fields=FIELDS,
    defaults=_BBPT_DEFAULTS,
    model=prompted_model,
)
FES_PIT = base.AlgorithmSpec(
    name="fes_pit",
    summary="server; split ViT: clients tune embedding and classifier, backprop through body",
    build=functools.partial(_build_fes, zeroth=False),
    fields=FIELDS,
    defaults=_FES_DEFAULTS,
    model=split_model,
)
FES_PTZO = base.AlgorithmSpec(
    name="fes_ptzo",
    summary="fes_pit with the body's backward pass replaced by a ZO estimate",
    build=functools.partial(_build_fes, zeroth=True),
    fields=FIELDS,
    defaults=_PTZO_DEFAULTS,
    model=split_model,
)
FEDKSEED = base.AlgorithmSpec(
    name="fedkseed",
    summary="server; ZO-SGD over a seed pool, only (seed, scalar) pairs sent",
    build=_build_fedkseed,
    fields=FIELDS,
    defaults=_KSEED_DEFAULTS,
    model=kseed_model,
)
