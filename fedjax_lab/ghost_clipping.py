"""DP-SGD's clipped gradient of a flax model from its layers, without per-example gradients.

For a dense layer ``y = a W + c`` on example ``b``, with input ``a_b`` (``[T, d_in]``: ``T``
positions, 1 for a plain MLP) and output gradient ``g_b = d l_b / d y_b`` (``[T, d_out]``),
the example's gradients are ``dW_b = a_b^T g_b`` and ``dc_b = 1^T g_b``, so

.. math::

  \\lVert dW_b \\rVert^2 = \\lVert a_b \\rVert^2 \\lVert g_b \\rVert^2 \\;(T = 1), \\qquad
  \\lVert dW_b \\rVert^2 = \\textstyle\\sum_{t,s} (a_b a_b^T)_{ts} (g_b g_b^T)_{ts}
  \\;\\text{or}\\; \\lVert a_b^T g_b \\rVert^2,

whichever of the ``[T, T]`` Gram matrices and the ``[d_in, d_out]`` products takes fewer
flops. A convolution is a dense layer on its input's patches (the ``kh x kw`` shifted,
strided slices of the padded input, in the kernel's ``(kh, kw, C_in)`` order); a 1-D
convolution is the 2-D one of height 1.

Every ``a_b`` and ``g_b`` comes from one batched forward pass and one backward pass to the
layers' outputs: flax's method interception records the input of every ``nn.Dense`` and
1-D or 2-D convolution call and adds a zero *tap* to its output, and the gradient of the batch
loss with respect to the taps is every ``g_b`` at once (times ``1/B``: the loss is the
batch mean of per-example losses). :func:`squared_norms` turns them into the per-example
norms (ghost clipping's norm pass); :func:`clipped_mean_gradient` also forms the clipped
mean ``(1/B) sum_b s_b a_b^T g_b`` from them, with no second backward pass (book-keeping).

The model's examples must be independent (no batch normalization), and every parameter
must belong to one such layer, called once per forward pass; otherwise both functions
return None and the caller falls back to per-example gradients.

References:
  Goodfellow, "Efficient Per-Example Gradient Computations", 2015.
  Li et al., "Large Language Models Can Be Strong Differentially Private Learners"
  (ghost clipping), ICLR 2022.
  Bu et al., "Differentially Private Optimization on Large Model at Small Cost"
  (book-keeping), ICML 2023.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedjax_lab.models import conv as conv_lib

__all__ = ["clipped_mean_gradient", "squared_norms"]

_LAYERS = (nn.Dense, nn.Conv, conv_lib.Conv)


class _Layer(NamedTuple):
    """What a tapped layer call needs for its norms: its parameters and conv geometry."""

    path: tuple[str, ...]
    use_bias: bool
    conv: dict[str, Any] | None  # None for a dense layer
    output: jax.ShapeDtypeStruct


def _pairs(value: Any, rank: int) -> tuple[int, ...]:
    if value is None:
        return (1,) * rank
    return (value,) * rank if isinstance(value, int) else tuple(value)


def _conv_geometry(module: nn.Module, rank: int) -> dict[str, Any] | None:
    """How to cut a 1-D or 2-D convolution's input into patches, or None where that is not
    supported (grouped, masked, input-dilated, circular or causal, other ranks). A 1-D
    convolution is the 2-D one of height 1 (``"rank": 1`` says to add that axis)."""
    if rank not in (1, 2):
        return None
    if isinstance(module, conv_lib.Conv):  # the library's stride-1 convolution
        strides, dilation = (1,) * rank, (1,) * rank
    else:
        grouped_or_masked = module.feature_group_count != 1 or module.mask is not None
        if grouped_or_masked or _pairs(module.input_dilation, rank) != (1,) * rank:
            return None
        strides, dilation = _pairs(module.strides, rank), _pairs(module.kernel_dilation, rank)
    kernel = tuple(module.kernel_size)
    padding = module.padding
    if isinstance(padding, str):
        padding = padding.upper()
        if padding not in ("SAME", "VALID"):
            return None
    elif isinstance(padding, int):
        padding = ((padding, padding),) * rank
    else:
        padding = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
    if rank == 1:  # height 1: a unit kernel, stride and dilation, no padding along it
        kernel, strides, dilation = (1, *kernel), (1, *strides), (1, *dilation)
        padding = padding if isinstance(padding, str) else ((0, 0), *padding)
    return {
        "kernel": kernel,
        "strides": strides,
        "dilation": dilation,
        "padding": padding,
        "rank": rank,
    }


def _patches(x: jax.Array, geometry: dict[str, Any]) -> jax.Array:
    """``[B, H_out * W_out, kh * kw * C]``: the input window of every output position."""
    kernel, strides, dilation = geometry["kernel"], geometry["strides"], geometry["dilation"]
    padding = geometry["padding"]
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(
            x.shape[1:3],
            tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation)),
            strides,
            padding,
        )
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    out = [
        (size - (k - 1) * d - 1) // s + 1
        for size, k, d, s in zip(x.shape[1:3], kernel, dilation, strides)
    ]
    windows = [
        x[
            :,
            p * dilation[0] : p * dilation[0] + (out[0] - 1) * strides[0] + 1 : strides[0],
            q * dilation[1] : q * dilation[1] + (out[1] - 1) * strides[1] + 1 : strides[1],
        ]
        for p in range(kernel[0])
        for q in range(kernel[1])
    ]
    stacked = jnp.stack(windows, axis=3)  # [B, H_out, W_out, kh * kw, C]
    return stacked.reshape(x.shape[0], out[0] * out[1], -1)


_UNSUPPORTED = object()  # a tapped layer whose norms this module cannot compute


def _layer_of(context: Any, args: tuple, out: jax.Array) -> Any:
    """The call's :class:`_Layer`, ``_UNSUPPORTED``, or None when it is not a layer call."""
    module = context.module
    if context.method_name != "__call__" or type(module) not in _LAYERS:
        return None
    conv = None
    if type(module) is not nn.Dense:
        conv = _conv_geometry(module, jnp.ndim(args[0]) - 2)
        if conv is None:
            return _UNSUPPORTED
    return _Layer(
        tuple(module.scope.path), module.use_bias, conv, jax.ShapeDtypeStruct(out.shape, out.dtype)
    )


def _layers(loss_fn: Callable, params: Any, batch: Any) -> list[_Layer] | None:
    """The tapped layer calls of one forward pass, or None when the norms cannot come from
    them (a parameter outside them, a layer called twice, an unsupported convolution)."""
    calls = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        layer = _layer_of(context, args, out)
        if layer is not None:
            calls.append(layer)
        return out

    with nn.intercept_methods(record):
        # A fresh function: eval_shape caches traces by function, and a cached trace would
        # not run the interceptor.
        jax.eval_shape(lambda p, b: loss_fn(p, b), params, batch)
    if not calls or any(layer is _UNSUPPORTED for layer in calls):
        return None
    covered = []
    for layer in calls:
        covered.append(layer.path + ("kernel",))
        if layer.use_bias:
            covered.append(layer.path + ("bias",))
    leaves = [_key(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    if len(set(covered)) != len(covered) or sorted(covered) != sorted(leaves):
        return None
    return calls


def _kernel_norms(a: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """``||a_b^T g_b||_F^2`` for ``a [B, T, d_in]``, ``g [B, T, d_out]``, and the
    per-example products ``a_b^T g_b`` when they were formed (None from the Gram matrices)."""
    t, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
    if t == 1:
        squared = jnp.sum(jnp.square(a[:, 0]), axis=1) * jnp.sum(jnp.square(g[:, 0]), axis=1)
        return squared, None
    if t * (d_in + d_out) < d_in * d_out:  # the Gram matrices take fewer flops
        gram_a = jnp.einsum("btd,bsd->bts", a, a)
        gram_g = jnp.einsum("btd,bsd->bts", g, g)
        return jnp.sum(gram_a * gram_g, axis=(1, 2)), None
    products = jnp.einsum("btd,bte->bde", a, g)
    return jnp.sum(jnp.square(products), axis=(1, 2)), products


class _Tapped(NamedTuple):
    """One tapped forward and backward pass: the batch loss, and per layer its parameters'
    path, whether it has a bias, its inputs ``a [B, T, d_in]`` (patches for a convolution)
    and its per-example output gradients ``g [B, T, d_out]``."""

    loss: jax.Array
    layers: list[_Layer]
    inputs: list[jax.Array]
    out_grads: list[jax.Array]


def _tapped_pass(loss_fn: Callable, params: Any, batch: Any) -> _Tapped | None:
    layers = _layers(loss_fn, params, batch)
    if layers is None:
        return None
    size = jax.tree.leaves(batch)[0].shape[0]

    def tapped(taps):
        inputs = []

        def tap(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if _layer_of(context, args, out) is not None:
                out = out + taps[len(inputs)]
                inputs.append(args[0])
            return out

        with nn.intercept_methods(tap):
            loss = loss_fn(params, batch)
        return loss, inputs

    zeros = [jnp.zeros(layer.output.shape, layer.output.dtype) for layer in layers]
    (loss, inputs), out_grads = jax.value_and_grad(tapped, has_aux=True)(zeros)
    flat_inputs, flat_grads = [], []
    for layer, a, g in zip(layers, inputs, out_grads):
        a = jax.lax.stop_gradient(a)
        if layer.conv is not None:
            if layer.conv["rank"] == 1:
                a = a[:, None]  # [B, 1, L, C]
            a = _patches(a, layer.conv)
        flat_inputs.append(a.reshape(size, -1, a.shape[-1]))
        g = g * size  # the loss is the batch mean: d l_b / d y_b is B times its gradient
        flat_grads.append(g.reshape(size, -1, g.shape[-1]))
    return _Tapped(loss, layers, flat_inputs, flat_grads)


def _per_layer(tapped: _Tapped) -> list[tuple[jax.Array, jax.Array | None]]:
    """Per layer: the examples' squared norms ``[B]`` and their kernel products, if formed."""
    out = []
    for layer, a, g in zip(tapped.layers, tapped.inputs, tapped.out_grads):
        squared, products = _kernel_norms(a, g)
        if layer.use_bias:
            squared = squared + jnp.sum(jnp.square(jnp.sum(g, axis=1)), axis=1)
        out.append((squared, products))
    return out


def squared_norms(loss_fn: Callable, params: Any, batch: Any) -> jax.Array | None:
    """``[B]``: ``||grad_params l_b||^2`` for every example ``b`` of ``batch``, or None.

    Args:
      loss_fn: ``(params, batch) -> scalar``, the mean over the batch's leading axis of
        per-example losses, computed by a flax model of ``nn.Dense`` and 1-D or 2-D
        convolution layers (see the module docstring).
      params: the model's parameters, the ``params`` collection as a nested dict.
      batch: a pytree whose leaves carry the example axis first.

    Returns:
      The squared per-example gradient norms, or None when the model has a parameter
      outside those layers, calls one twice, or uses a convolution this module does not
      handle (grouped, masked, input-dilated, circular or causal padding, not 1-D or 2-D).
    """
    tapped = _tapped_pass(loss_fn, params, batch)
    if tapped is None:
        return None
    return sum(squared for squared, _ in _per_layer(tapped))


def clipped_mean_gradient(
    loss_fn: Callable, params: Any, batch: Any, clip_norm: float
) -> tuple[jax.Array, Any] | None:
    """The batch loss and ``(1/B) sum_b min(1, C / ||g_b||) g_b`` in one pass, or None.

    The per-example norms come from :func:`squared_norms`' quantities, and so does the
    clipped mean (book-keeping: no second backward pass): for each layer,
    ``dW = (1/B) sum_b s_b a_b^T g_b`` and ``dc = (1/B) sum_b s_b 1^T g_b`` with
    ``s_b = min(1, C / ||g_b||)``, from the per-example products where they were formed.

    Args:
      loss_fn, params, batch: as for :func:`squared_norms`.
      clip_norm: ``C > 0``.

    Returns:
      ``(loss, grads)`` with ``grads`` shaped like ``params``, or None where
      :func:`squared_norms` is.
    """
    tapped = _tapped_pass(loss_fn, params, batch)
    if tapped is None:
        return None
    per_layer = _per_layer(tapped)
    size = tapped.inputs[0].shape[0]
    norms = jnp.sqrt(sum(squared for squared, _ in per_layer))
    scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-12)) / size
    grads = {}
    for layer, a, g, (_, products) in zip(
        tapped.layers, tapped.inputs, tapped.out_grads, per_layer
    ):
        if products is not None:
            grads[layer.path + ("kernel",)] = jnp.einsum("b,bde->de", scale, products)
        else:
            grads[layer.path + ("kernel",)] = jnp.einsum("btd,bte->de", a, scale[:, None, None] * g)
        if layer.use_bias:
            grads[layer.path + ("bias",)] = jnp.einsum("b,bte->e", scale, g)
    tree = jax.tree_util.tree_map_with_path(
        lambda path, leaf: grads[_key(path)].reshape(leaf.shape).astype(leaf.dtype), params
    )
    return tapped.loss, tree


def _key(path: tuple) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
