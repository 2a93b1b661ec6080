"""Registry entries of the zeroth-order family: Fed-BBPT, FES-PIT, FES-PTZO, FedKSeed (the
``zo`` section), and the frozen models they tune, built from a config.

``config.model = "pretrained"`` tunes ``zo.model``: a shipped pre-trained model
(:mod:`fedjax_lab.pretrained`) or a checkpoint directory. A ``zo`` key an algorithm does
not read stays ``None``: setting it is an error, as for every key an algorithm does not read
(:func:`fedjax_lab.specs.build_algorithm`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import ml_collections
import optax

from fedjax_lab import data
from fedjax_lab import gradients
from fedjax_lab import models
from fedjax_lab import pretrained
from fedjax_lab.algorithms import zeroth_order as zo_algorithms
from fedjax_lab.black_box import black_box
from fedjax_lab.specs import base
from fedjax_lab.specs.fields import Field
from fedjax_lab.transforms import zeroth_order

ESTIMATORS = zeroth_order.ESTIMATORS + ("spsa_gc",)

FIELDS = (
    Field(
        "zo.model",
        None,
        "the pre-trained model tuned when model=pretrained: a shipped name (digits_cnn, "
        "digits_vit) or a checkpoint directory (fedjax_lab.pretrained.save); None = the "
        "algorithm's (digits_cnn for fed_bbpt, digits_vit for fes_pit and fes_ptzo)",
        str,
    ),
    Field(
        "zo.estimator",
        None,
        "two_point, forward, or spsa_gc (fed_bbpt); None = the algorithm's (two_point; "
        "forward for fes_ptzo)",
        str,
    ),
    Field(
        "zo.directions", None, "gaussian, sphere or rademacher; None = gaussian where used", str
    ),
    Field(
        "zo.mu", None, "smoothing radius (SPSA's c, FedKSeed's eps); None = the algorithm's", float
    ),
    Field(
        "zo.num_directions", None, "q per step; None = 4 (fed_bbpt), 1 (fes_ptzo)", int
    ),
    Field("zo.spsa_alpha", None, "spsa_gc: gain a_k = lr / (k + 1)^alpha", float),
    Field("zo.spsa_gamma", None, "spsa_gc: radius c_k = mu / (k + 1)^gamma", float),
    Field("zo.spsa_beta", None, "spsa_gc: momentum of the correction", float),
    Field("zo.seeds", None, "fedkseed: K, the seed pool; None = 4096", int),
    Field(
        "zo.prompt_hidden", None, "fed_bbpt: the generator's bottleneck width (0 = none)", int
    ),
    Field(
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
    return optax.chain(estimate, base.local_sgd(c))


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


def _build_fed_bbpt(c, loss_fn):
    optimizer = base.local_sgd(c) if c.zo.white_box else local_zo_optimizer(c)
    return zo_algorithms.fed_bbpt(
        loss_fn, optimizer, white_box=c.zo.white_box, **base.server_kwargs(c)
    )


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


def _build_fes(c, loss_fn, zeroth: bool):
    num_classes, input_shape = data.task_shape(c.dataset)
    module, _ = _split_module(c, num_classes, input_shape)  # its structure, no parameters
    tokens = (input_shape[0] // module.patch_size) * (input_shape[1] // module.patch_size)
    kwargs = dict(tensors=zo_algorithms.tensors_per_step(False), gradient=gradients.batch_gradient)
    if zeroth:
        z = c.zo
        kwargs = dict(
            tensors=zo_algorithms.tensors_per_step(True, z.estimator, z.num_directions),
            gradient=zo_algorithms.split_zo_gradient(
                module, z.mu, z.num_directions, estimator=z.estimator, distribution=z.directions
            ),
        )
    return zo_algorithms.fes(
        loss_fn,
        base.local_sgd(c),
        activation_bytes=c.local.batch_size * tokens * module.dim * 4,
        name=c.algorithm,
        **kwargs,
        **base.server_kwargs(c),
    )


def kseed_model(c: ml_collections.ConfigDict, num_classes: int, input_shape: tuple, key):
    """FedKSeed's starting point with ``model=pretrained``: ``zo.model`` as it is."""
    del key
    pre = _load(c)
    _check_input(pre, input_shape, c.dataset)
    _check_classes(pre, num_classes, c)
    return pre.model, pre.params


def _build_fedkseed(c, loss_fn):
    if c.server.optimizer != "sgd" or c.server.learning_rate != 1.0:
        raise ValueError(
            "fedkseed's server replays the clients' pairs as they are (so every client rebuilds "
            f"its model): expected server.optimizer='sgd' and server.learning_rate=1.0, got "
            f"{c.server.optimizer!r} and {c.server.learning_rate!r}."
        )
    return zo_algorithms.fedkseed(
        loss_fn,
        learning_rate=c.local.learning_rate,
        steps=c.local.steps,
        num_seeds=c.zo.seeds,
        eps=c.zo.mu,
        pool_seed=c.seed,
        distribution=c.zo.directions,
        **base.cohort_kwargs(c),
    )


FED_BBPT = base.AlgorithmSpec(
    name="fed_bbpt",
    summary="server; a prompt generator for a black-box pre-trained model, ZO-trained",
    build=_build_fed_bbpt,
    fields=FIELDS,
    defaults=_BBPT_DEFAULTS,
    model=prompted_model,
    model_keys=("zo.model",),
)
FES_PIT = base.AlgorithmSpec(
    name="fes_pit",
    summary="server; split ViT: clients tune embedding and classifier, backprop through body",
    build=functools.partial(_build_fes, zeroth=False),
    fields=FIELDS,
    defaults=_FES_DEFAULTS,
    model=split_model,
    model_keys=("zo.model",),
)
FES_PTZO = base.AlgorithmSpec(
    name="fes_ptzo",
    summary="fes_pit with the body's backward pass replaced by a ZO estimate",
    build=functools.partial(_build_fes, zeroth=True),
    fields=FIELDS,
    defaults=_PTZO_DEFAULTS,
    model=split_model,
    model_keys=("zo.model",),
)
FEDKSEED = base.AlgorithmSpec(
    name="fedkseed",
    summary="server; ZO-SGD over a seed pool, only (seed, scalar) pairs sent",
    build=_build_fedkseed,
    fields=FIELDS,
    defaults=_KSEED_DEFAULTS,
    model=kseed_model,
    model_keys=("zo.model",),
)
