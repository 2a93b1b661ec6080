"""The zeroth-order family: tuning pre-trained models that clients can only query.

Every algorithm here is a server round (:func:`~fedjax_lab.algorithms.server.fedavg`) of
pieces the other families use too (client sampling, the server mean, the no-gradient hook
``gradient=None``, a communication piece that counts what crosses the wire):

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
  from the step's key). Bytes count those tensors (``activations_sent``,
  :func:`~fedjax_lab.algorithms.communication.with_step_traffic`), and the averaged
  client parts (``models_sent``).
* :func:`fedkseed` (FedKSeed): every local step is :func:`~fedjax_lab.transforms.kseed_sgd`
  over a pool of ``K`` seeds; a client sends only its (seed, scalar) pairs
  (:func:`kseed_messages`, an :func:`~fedjax_lab.algorithms.communication.encoded`
  piece); the server replays them on the shared start point,
  ``x <- x + sum_i w_i sum_k c_ik z_{j_ik}``, and broadcasts them, so every client rebuilds
  the same model (:func:`rebuild`). Bytes count the pairs.

The frozen models themselves (loading a pre-trained checkpoint, wrapping it as a black
box) are built from a config by :mod:`fedjax_lab.specs.zeroth_order`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from fedjax_lab import gradients
from fedjax_lab import local
from fedjax_lab.algorithms import base
from fedjax_lab.algorithms import communication
from fedjax_lab.algorithms import server
from fedjax_lab.transforms import zeroth_order


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
      local_optimizer: a zeroth-order optimizer (``chain(zo_gradient(mu, q), sgd)`` or
        ``spsa_gc``, :mod:`fedjax_lab.transforms.zeroth_order`); with ``white_box`` any
        optimizer, fed true gradients.
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


def split_zo_gradient(
    model: Any,
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
        logits = model.apply({"params": params}, tokens, method="classify")
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    def gradient(loss_fn, params, batch, key):
        del loss_fn  # the loss is rebuilt from the model's parts
        embed = lambda p: model.apply({"params": p}, batch["x"], method="embed")
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
      **kwargs: the other settings of :func:`~fedjax_lab.algorithms.server.fedavg`.
    """
    cut = {"activations_sent": (tensors, activation_bytes)}
    return server.fedavg(
        loss_fn,
        local_optimizer,
        num_clients=num_clients,
        clients_per_round=clients_per_round,
        gradient=gradient,
        communication=communication.with_step_traffic(communication.server_mean(), cut),
        name=name,
        **kwargs,
    )


def kseed_decoder(pool_seed: int, distribution: str = "gaussian"):
    """``(messages, weights, start, step_scale) -> update``: FedKSeed's mean update, the
    weighted (seed, scalar) pairs replayed on the start point."""

    def decode(messages, weights, start, step_scale):
        coefficients = messages["coefficients"] * (weights[:, None] * step_scale)
        return zeroth_order.kseed_replay(
            pool_seed, messages["seeds"], coefficients, start, distribution
        )

    return decode


def kseed_messages(pool_seed: int, distribution: str = "gaussian") -> communication.Communication:
    """FedKSeed's messages: each client's (seed, ``-lr g``) pairs from its
    :func:`~fedjax_lab.transforms.kseed_sgd` state; decoded by replaying them."""

    def encode(out):
        (state,) = out.opt_states
        return {"seeds": state.seeds, "coefficients": state.coefficients}

    return communication.encoded(encode, kseed_decoder(pool_seed, distribution))


def rebuild(
    params: Any,
    broadcast: communication.Broadcast,
    *,
    pool_seed: int,
    distribution: str = "gaussian",
) -> Any:
    """A client's rebuild of FedKSeed's new model from the one before the round and the
    round's broadcast pairs (``State.communication``): bitwise the server's."""
    update = kseed_decoder(pool_seed, distribution)(
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

    Other keyword arguments are the settings of the client update (``step_counts``,
    ``lr_decay``); there is no server optimizer: the server replays the pairs as they are,
    so every client rebuilds the model.
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
        communication=kseed_messages(pool_seed, distribution),
        **kwargs,
    )


