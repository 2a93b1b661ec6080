"""Convolution and max pooling whose gradients XLA:CPU runs fast inside loops.

**Convolution.** For an input ``x`` ``[B, H, W, C_in]`` (NHWC), a kernel ``k``
``[kh, kw, C_in, C_out]`` (HWIO), stride 1 and zero padding ``(lo_h, hi_h), (lo_w, hi_w)``
(``x_pad`` is ``x`` padded so), :func:`conv2d` computes the cross-correlation

.. math::

  y[b, i, j, o] = \\sum_{p, q, c} x_{pad}[b, i + p, j + q, c] \\, k[p, q, c, o],

with ``H_out = H + lo_h + hi_h - kh + 1`` (likewise ``W_out``). Given the output gradient
``g = dL/dy`` ``[B, H_out, W_out, C_out]``, both gradients are again forward cross-correlations:

.. math::

  \\frac{\\partial L}{\\partial x}[b, i, j, c]
      = \\sum_{p, q, o} g_{pad}[b, i + p, j + q, o] \\, \\tilde k[p, q, o, c],
  \\qquad \\tilde k[p, q, o, c] = k[kh - 1 - p, kw - 1 - q, c, o],

where ``g_pad`` is ``g`` padded by ``(kh - 1 - lo_h, kh - 1 - hi_h)`` and
``(kw - 1 - lo_w, kw - 1 - hi_w)`` (the flipped, in/out-swapped kernel), and

.. math::

  \\frac{\\partial L}{\\partial k}[p, q, c, o]
      = \\sum_{b, i, j} x_{pad}[b, i + p, j + q, c] \\, g[b, i, j, o],

a VALID convolution of ``x_pad`` transposed to ``[C_in, H_pad, W_pad, B]`` (``C_in`` plays the
batch, ``B`` the input channels) with ``g`` transposed to ``[H_out, W_out, B, C_out]`` as the
kernel, whose ``[C_in, kh, kw, C_out]`` result is transposed back to HWIO. A ``jax.custom_vjp``
computes the gradients this way.

Why, on XLA:CPU (JAX 0.10):

* Autodiff of ``lax.conv_general_dilated`` computes the same numbers with transposed
  dimension numbers, which XLA:CPU runs on a slow path inside ``while`` loops (``lax.scan``
  over local steps, ``lax.map`` over clients): about 40x slower for the weight gradient. The
  three plain NHWC/HWIO convolutions here cost the same inside and outside loops.
* Under ``jax.vmap`` with per-client kernels JAX would batch each convolution into one grouped
  convolution, which XLA:CPU runs many times slower than the separate convolutions. A
  ``jax.custom_batching.custom_vmap`` rule instead loops over the mapped axis with ``lax.map``
  (or folds it into the batch when the kernel is shared), so every strategy of
  :func:`fedjax_lab.clients.map_clients` runs ordinary convolutions.
* XLA:CPU hands an NHWC/HWIO convolution with more than 16 channels to a YNNPACK kernel that
  runs on one thread, but leaves a convolution whose output is taller than its input to its
  multi-threaded Eigen kernel. So on the CPU backend the forward and input-gradient
  convolutions with more than 16 input and output channels compute one extra zero-padded
  output row and drop it (``1/H_out`` more arithmetic, about 1.7x faster on 2 cores for a
  32->64 channel 5x5 layer at 14x14). The values agree with XLA's own convolution to float32
  rounding, not bit for bit. The weight-gradient convolution stays on YNNPACK: Eigen is
  much slower for its shape (a large kernel and a kh x kw output).

**Pooling.** :func:`max_pool` equals ``flax.linen.max_pool`` in value and gradient but
differentiates into elementwise selections and strided pads instead of XLA's
``select_and_scatter``, which XLA:CPU runs about 5x slower.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

PADDINGS = ("SAME", "VALID")

_NHWC = ("NHWC", "HWIO", "NHWC")


def _check_padding(padding: Any) -> str:
    if not isinstance(padding, str) or padding.upper() not in PADDINGS:
        raise ValueError(f"Unknown conv padding {padding!r}; expected one of {PADDINGS}.")
    return padding.upper()


def conv_pads(padding: str, kernel_hw: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Explicit ``(low, high)`` zero padding per spatial axis for stride 1.

    ``"VALID"`` is no padding; ``"SAME"`` pads ``k - 1`` in total, ``(k - 1) // 2`` before and
    the rest after (the convention of ``lax.conv_general_dilated``), so the output keeps the
    input's spatial size.
    """
    padding = _check_padding(padding)
    if padding == "VALID":
        return tuple((0, 0) for _ in kernel_hw)
    return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_hw)


# Convolutions with more input and output channels than this are steered from YNNPACK to
# Eigen on the CPU backend by one extra output row (module docstring).
_STEER_MIN_CHANNELS = 16


def _plain_conv(x: jax.Array, kernel: jax.Array, pads, steer: bool) -> jax.Array:
    if steer and min(x.shape[3], kernel.shape[3]) > _STEER_MIN_CHANNELS:
        (lo, hi), pads_w = pads
        y = jax.lax.conv_general_dilated(
            x, kernel, (1, 1), ((lo, hi + 1), pads_w), dimension_numbers=_NHWC
        )
        return y[:, :-1]
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), tuple(pads), dimension_numbers=_NHWC)


@functools.cache
def _forward_conv(pads: tuple[tuple[int, int], ...], steer: bool, loop_under_vmap: bool):
    """``(x, kernel) -> conv``, by default with a batching rule that makes no grouped convs.

    Under ``jax.vmap`` JAX would batch a convolution with per-example kernels into one
    grouped convolution, which XLA:CPU runs many times slower than the separate ones.
    This rule instead folds the vmapped axis into the batch when the kernel is shared and
    otherwise loops over it with ``lax.map`` (one ordinary convolution per entry).
    """
    if not loop_under_vmap:
        return functools.partial(_plain_conv, pads=pads, steer=steer)

    @jax.custom_batching.custom_vmap
    def conv(x, kernel):
        return _plain_conv(x, kernel, pads, steer)

    @conv.def_vmap
    def conv_vmap(axis_size, in_batched, x, kernel):
        x_batched, kernel_batched = in_batched
        if not kernel_batched:  # One kernel for all: the mapped axis joins the batch.
            y = conv(x.reshape((-1,) + x.shape[2:]), kernel)
            return y.reshape((axis_size, -1) + y.shape[1:]), True
        if not x_batched:
            x = jnp.broadcast_to(x, (axis_size,) + x.shape)
        return jax.lax.map(lambda args: conv(*args), (x, kernel)), True

    return conv


def _conv(x: jax.Array, kernel: jax.Array, pads, loop_under_vmap: bool, steer: bool = True):
    steer = steer and jax.default_backend() == "cpu"
    return _forward_conv(tuple(tuple(p) for p in pads), steer, loop_under_vmap)(x, kernel)


def _check_shapes(x: jax.Array, kernel: jax.Array) -> None:
    if jnp.ndim(x) != 4 or jnp.ndim(kernel) != 4:
        raise ValueError(
            "conv2d expects x of shape [B, H, W, C_in] and kernel of shape "
            f"[kh, kw, C_in, C_out]; got x {jnp.shape(x)} and kernel {jnp.shape(kernel)}."
        )
    if x.shape[3] != kernel.shape[2]:
        raise ValueError(
            f"conv2d channel mismatch: x has C_in={x.shape[3]} (shape {x.shape}) but the kernel "
            f"expects {kernel.shape[2]} (shape {kernel.shape})."
        )


def conv2d(
    x: jax.Array, kernel: jax.Array, padding: str = "SAME", *, loop_under_vmap: bool = True
) -> jax.Array:
    """Stride-1 NHWC x HWIO convolution with forward-convolution gradients.

    Equals ``lax.conv_general_dilated(x, kernel, (1, 1), padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"))`` in value and in first derivatives to
    float32 rounding (see the module docstring for the math). Reverse mode only: neither
    forward-mode nor higher derivatives are supported. Works under ``jit``, ``vmap`` (also
    with per-example kernels) and inside ``lax.scan``/``lax.map``.

    Args:
      x: ``[B, H, W, C_in]``.
      kernel: ``[kh, kw, C_in, C_out]``.
      padding: ``"SAME"`` or ``"VALID"``.
      loop_under_vmap: under ``jax.vmap`` with per-example kernels, run one convolution per
        example in a ``lax.map`` loop (fast on XLA:CPU) instead of JAX's grouped convolution.
        :func:`fedjax_lab.clients.map_clients` keeps the loop local to each device when the
        clients are sharded (``shard_map``); turn it off only when vmapping yourself over an
        axis that XLA's SPMD partitioner splits, which all-gathers the operands of such a
        loop, so every device would compute every example.

    Returns:
      ``[B, H_out, W_out, C_out]``.
    """
    padding = _check_padding(padding)
    _check_shapes(x, kernel)
    return _conv2d(x, kernel, padding, bool(loop_under_vmap))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d(x: jax.Array, kernel: jax.Array, padding: str, loop: bool) -> jax.Array:
    return _conv(x, kernel, conv_pads(padding, kernel.shape[:2]), loop)


def _conv2d_fwd(x, kernel, padding, loop):
    return _conv2d(x, kernel, padding, loop), (x, kernel)


def _conv2d_bwd(padding, loop, residuals, g):
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    (lo_h, hi_h), (lo_w, hi_w) = pads = conv_pads(padding, (kh, kw))
    # dL/dx: correlate g (padded by k - 1 - pad) with the flipped, in/out-swapped kernel.
    flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
    grad_x = _conv(
        g,
        flipped,
        ((kh - 1 - lo_h, kh - 1 - hi_h), (kw - 1 - lo_w, kw - 1 - hi_w)),
        loop,
    )
    # dL/dk: C_in acts as the batch, B as the channels; g is the kernel. (Not steered: its
    # output is only kh x kw, and Eigen is slow on this shape.)
    lhs = jnp.transpose(x, (3, 1, 2, 0))  # [C_in, H, W, B]; the conv pads H and W.
    rhs = jnp.transpose(g, (1, 2, 0, 3))  # [H_out, W_out, B, C_out]
    grad_k = _conv(lhs, rhs, pads, loop, steer=False)  # [C_in, kh, kw, C_out]
    grad_k = jnp.transpose(grad_k, (1, 2, 0, 3))  # -> HWIO
    return grad_x.astype(x.dtype), grad_k.astype(kernel.dtype)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def max_pool(
    x: jax.Array,
    window: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
) -> jax.Array:
    """Max pooling over H and W of an NHWC array, with loop-friendly gradients.

    Equals ``flax.linen.max_pool(x, window, strides, padding)`` in value and gradient:

    .. math::

      y[b, i, j, c] = \\max_{p < w_h, \\, q < w_w} x_{pad}[b, s_h i + p, s_w j + q, c],

    with ``x_pad`` padded by ``-inf`` as ``padding`` (``"SAME"`` or ``"VALID"``) says, and
    the gradient of each window routed to its first maximal element in row-major window
    order (XLA's ``select_and_scatter`` rule). It is built from the ``w_h * w_w`` strided
    slices ``x_pad[:, p::s_h, q::s_w]``: the value is their running maximum and the
    gradient flows through a chain of ``where(slice == max, ...)`` selections, so
    autodiff produces elementwise ops and strided pads instead of ``select_and_scatter``,
    which XLA:CPU runs several times slower.
    """
    window = tuple(int(w) for w in window)
    strides = window if strides is None else tuple(int(s) for s in strides)
    if len(window) != 2 or len(strides) != 2 or min(window + strides) < 1:
        raise ValueError(
            f"max_pool expects a 2-D window and strides of positive ints, got window={window!r} "
            f"and strides={strides!r}."
        )
    if jnp.ndim(x) != 4:
        raise ValueError(f"max_pool expects x of shape [B, H, W, C], got {jnp.shape(x)}.")
    padding = _check_padding(padding)
    pads = jax.lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
    if any(lo or hi for lo, hi in pads):
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    (wh, ww), (sh, sw) = window, strides
    out_h, out_w = (x.shape[1] - wh) // sh + 1, (x.shape[2] - ww) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"max_pool window {window} does not fit the {padding}-padded input {x.shape[1:3]}."
        )
    slices = [
        x[:, p : p + (out_h - 1) * sh + 1 : sh, q : q + (out_w - 1) * sw + 1 : sw]
        for p in range(wh)
        for q in range(ww)
    ]
    top = jax.lax.stop_gradient(functools.reduce(jnp.maximum, slices))
    y = slices[-1]
    for s in reversed(slices[:-1]):  # The first maximal slice wins.
        y = jnp.where(s == top, s, y)
    return y


class Conv(nn.Module):
    """Stride-1 2-D convolution layer built on :func:`conv2d`.

    A drop-in for ``flax.linen.Conv(features, kernel_size, padding=...)`` with stride 1: the
    same parameters (``kernel`` ``[kh, kw, C_in, features]`` drawn by ``kernel_init``, ``bias``
    ``[features]`` drawn by ``bias_init``, same defaults), hence the same initial values for
    the same PRNG key and the same outputs ``y = conv(x, kernel) + bias`` for the same
    parameters. Inputs with several leading batch axes are flattened to one and restored.
    ``loop_under_vmap`` is passed to :func:`conv2d`.
    """

    features: int
    kernel_size: Sequence[int]
    padding: str = "SAME"
    use_bias: bool = True
    kernel_init: Any = nn.linear.default_kernel_init
    bias_init: Any = nn.initializers.zeros_init()
    param_dtype: Any = jnp.float32
    loop_under_vmap: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_size = tuple(self.kernel_size)
        if len(kernel_size) != 2:
            raise ValueError(
                f"Conv is 2-D: expected a kernel_size of two ints, got {self.kernel_size!r}."
            )
        padding = _check_padding(self.padding)
        if x.ndim < 4:
            raise ValueError(
                f"Conv expects inputs [..., H, W, C] with at least one batch axis, got {x.shape}."
            )
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        kernel = self.param(
            "kernel", self.kernel_init, kernel_size + (x.shape[-1], self.features), self.param_dtype
        )
        dtype = jnp.result_type(x, kernel)
        y = conv2d(
            x.astype(dtype), kernel.astype(dtype), padding, loop_under_vmap=self.loop_under_vmap
        )
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + jnp.reshape(bias, (1, 1, 1, -1)).astype(dtype)
        return y.reshape(batch_shape + y.shape[1:])
