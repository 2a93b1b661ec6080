"""Losses and scores of a classifier, built from its ``apply_fn(params, x) -> logits``.

A batch is a dict ``{"x": inputs [B, ...], "y": int labels [B]}``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

ApplyFn = Callable[[Any, jax.Array], jax.Array]


def cross_entropy_loss(apply_fn: ApplyFn) -> Callable[[Any, dict], jax.Array]:
    """``(params, batch) -> mean_b -log softmax(apply_fn(params, x_b))[y_b]``."""

    def loss_fn(params, batch):
        logits = apply_fn(params, batch["x"])
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))

    return loss_fn


def masked_accuracy(
    apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, num_examples: jax.Array
) -> jax.Array:
    """Accuracy over the first ``num_examples`` rows of ``x`` (the rest is padding)."""
    correct = jnp.argmax(apply_fn(params, x), axis=-1) == y
    valid = jnp.arange(y.shape[0]) < num_examples
    return jnp.sum(correct & valid) / jnp.maximum(num_examples, 1)
