"""A model reachable only through its forward function: differentiating it is an error.

Black-box tuning (Fed-BBPT) assumes the pre-trained model is an API that returns outputs
and nothing else. :func:`black_box` wraps a forward function so that it keeps working under
``jit`` and ``vmap``, but any attempt to differentiate through it (``grad``, ``jvp``,
``vjp``, with respect to its inputs or to anything they depend on) raises
:class:`BlackBoxDifferentiationError` while tracing. A method that trains through the
wrapped model is therefore provably gradient-free: zeroth-order estimators
(:mod:`fedjax_lab.transforms.zeroth_order`) only evaluate it.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax

__all__ = ["BlackBoxDifferentiationError", "black_box"]


class BlackBoxDifferentiationError(TypeError):
    """Raised when a gradient would flow through a :func:`black_box` model."""


def black_box(forward: Callable, name: str = "the black-box model") -> Callable:
    """``forward`` as a black box: same outputs, and differentiating it raises.

    Args:
      forward: a function of arrays (the frozen model's parameters closed over).
      name: what the error calls the model.

    Returns:
      A function with ``forward``'s signature and outputs.
    """

    @jax.custom_jvp
    def wrapped(*args):
        return forward(*args)

    @wrapped.defjvp
    def _refuse(primals, tangents):
        del primals, tangents
        raise BlackBoxDifferentiationError(
            f"A gradient would flow through {name}, which is reachable only through its "
            "forward function (an API). Estimate gradients from its outputs instead "
            "(fedjax_lab.transforms.zo_gradient) and train with gradient=None."
        )

    return functools.wraps(forward)(wrapped)
