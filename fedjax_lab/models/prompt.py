"""Visual prompting: a small generator whose output is added to the input of a frozen model.

For an input ``x`` the generator returns a prompt of the same shape,

.. math::

  p(x) = a \\odot x + b \\; [+ \\, V \\tanh(U \\operatorname{vec}(x) + c)],

a per-pixel affine map (``a``, ``b`` shaped like one input) plus, with ``hidden > 0``, an
input-conditioned bottleneck term, and the frozen model sees ``x + p(x)``
(:class:`PromptedModel`). Every parameter starts at zero, so training starts from the
frozen model itself (the "no prompt" baseline). The per-pixel map can express contrast
changes and shifts (an inverted image is ``x + (-2x + 1)``); the bottleneck adds
input-dependent prompts, as BlackVIP's coordinator does.

Reference: Oh et al., "BlackVIP: Black-Box Visual Prompting for Robust Transfer
Learning", CVPR 2023; Park et al., "Fed-BBPT", 2023.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp


class PromptGenerator(nn.Module):
    """``x [B, ...] -> p(x) [B, ...]`` (module docstring); zero at initialization."""

    hidden: int = 0

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        shape = x.shape[1:]
        scale = self.param("scale", nn.initializers.zeros, shape)
        bias = self.param("bias", nn.initializers.zeros, shape)
        prompt = scale * x + bias
        if self.hidden:
            flat = x.reshape(x.shape[0], -1)
            code = jnp.tanh(nn.Dense(self.hidden, name="encoder")(flat))
            decoded = nn.Dense(flat.shape[1], kernel_init=nn.initializers.zeros, name="decoder")
            prompt = prompt + decoded(code).reshape(x.shape)
        return prompt


class PromptedModel(nn.Module):
    """``frozen(x + generator(x))``: only the generator has parameters.

    ``frozen`` is the pre-trained model as a function of its input alone (its parameters
    closed over), typically a :func:`fedjax_lab.black_box.black_box` API.
    """

    frozen: Callable[[jnp.ndarray], jnp.ndarray]
    hidden: int = 0

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.frozen(x + PromptGenerator(self.hidden, name="generator")(x))
