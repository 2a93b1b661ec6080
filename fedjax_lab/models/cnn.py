"""Small convolutional classifiers from the FedAvg literature (NHWC inputs).

Both models take a ``conv`` field choosing how their convolutions are computed:

* ``"flax"``: ``flax.linen.Conv`` (XLA's convolution and its autodiff);
* ``"custom"``: :class:`fedjax_lab.models.conv.Conv`, whose backward pass is made of forward
  convolutions; XLA:CPU runs autodiff's weight-gradient convolution on a slow path inside
  ``lax.scan``/``lax.map`` loops, this one not;
* ``"auto"`` (default): ``"custom"`` on the CPU backend (``jax.default_backend() == "cpu"``),
  ``"flax"`` elsewhere.

The choice changes neither the parameter tree (names, shapes, initial values for a key) nor
the outputs for given parameters, so parameters and checkpoints are interchangeable.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedjax_lab.models.conv import Conv
from fedjax_lab.models.conv import max_pool

CONV_IMPLEMENTATIONS = ("auto", "flax", "custom")


def resolve_conv(conv: str) -> str:
    """``"flax"`` or ``"custom"`` for a ``conv`` setting (``"auto"`` picks by backend)."""
    if conv not in CONV_IMPLEMENTATIONS:
        raise ValueError(
            f"Unknown conv implementation {conv!r}; expected one of {CONV_IMPLEMENTATIONS}."
        )
    if conv == "auto":
        return "custom" if jax.default_backend() == "cpu" else "flax"
    return conv


def conv_layer(conv: str, features: int, kernel_size: tuple[int, int], name: str) -> nn.Module:
    """A stride-1 SAME convolution named ``name``, built as ``conv`` says."""
    if resolve_conv(conv) == "custom":
        return Conv(features, kernel_size, padding="SAME", name=name)
    return nn.Conv(features, kernel_size, padding="SAME", name=name)


def pool_layer(conv: str, x: jnp.ndarray, window: int, stride: int, padding: str) -> jnp.ndarray:
    """Max pooling of ``x``; the ``"custom"`` path avoids XLA's ``select_and_scatter``."""
    if resolve_conv(conv) == "custom":
        return max_pool(x, (window, window), (stride, stride), padding)
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


class FedAvgCNN(nn.Module):
    """CIFAR CNN of the FedAvg paper (McMahan et al. 2017).

    conv5x5-64 (SAME) + ReLU -> maxpool 3x3/2 (SAME) -> conv5x5-64 (SAME) + ReLU
    -> maxpool 3x3/2 (SAME) -> flatten -> Dense 384 + ReLU -> Dense 192 + ReLU
    -> Dense ``num_classes`` (``head``). Input ``[B, H, W, C]``, output logits
    ``[B, num_classes]``. ``conv``: ``"auto"``, ``"flax"`` or ``"custom"`` (module docstring).
    """

    num_classes: int
    conv: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i in range(2):
            x = nn.relu(conv_layer(self.conv, 64, (5, 5), f"conv_{i}")(x))
            x = pool_layer(self.conv, x, 3, 2, "SAME")
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(384, name="dense_0")(x))
        x = nn.relu(nn.Dense(192, name="dense_1")(x))
        return nn.Dense(self.num_classes, name="head")(x)


class EmnistCNN(nn.Module):
    """EMNIST CNN of the FedAvg paper (McMahan et al. 2017; also Reddi et al. 2021).

    conv5x5-32 (SAME) + ReLU -> maxpool 2x2/2 -> conv5x5-64 (SAME) + ReLU ->
    maxpool 2x2/2 -> flatten -> Dense 512 + ReLU -> Dense ``num_classes``
    (``head``). Pooling uses VALID padding, so odd sizes are floored. Input
    ``[B, H, W, C]``, output logits ``[B, num_classes]``. ``conv``: ``"auto"``,
    ``"flax"`` or ``"custom"`` (module docstring). ``widths`` and ``hidden`` change the
    two convolutions' and the Dense layer's sizes (the shipped ``digits_cnn`` is a narrow
    one, quick to query many times).
    """

    num_classes: int
    conv: str = "auto"
    widths: tuple[int, int] = (32, 64)
    hidden: int = 512

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i, width in enumerate(self.widths):
            x = nn.relu(conv_layer(self.conv, width, (5, 5), f"conv_{i}")(x))
            x = pool_layer(self.conv, x, 2, 2, "VALID")
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden, name="dense_0")(x))
        return nn.Dense(self.num_classes, name="head")(x)
