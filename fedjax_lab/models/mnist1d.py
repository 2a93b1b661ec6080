"""The MNIST-1D benchmark's classifiers (Greydanus and Kobak, ICML 2024), for signals
``[B, 40]`` (:mod:`fedjax_lab.data.mnist1d`).

* :class:`Mnist1dMLP`: ``h = relu(W_1 x)``, ``h <- h + relu(W_2 h)`` (a residual second
  layer), logits ``W_3 h``; width 100 (15,210 parameters at 10 classes).
* :class:`Mnist1dCNN`: three 1-D convolutions with ReLU, 25 channels each, kernel 5 then
  3 and 3, stride 2, one position of zero padding on each side (length 40 -> 19 -> 10 ->
  5), flattened to 125 values and a linear head (5,210 parameters at 10 classes).

The shapes are those of the benchmark's released baselines; the initializations are
flax's defaults.
"""

import flax.linen as nn
import jax.numpy as jnp


class Mnist1dMLP(nn.Module):
    """The MNIST-1D MLP (module docstring); input ``[B, L]``, output ``[B, num_classes]``."""

    num_classes: int
    width: int = 100

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = x.reshape((x.shape[0], -1))
        h = nn.relu(nn.Dense(self.width, name="hidden_0")(x))
        h = h + nn.relu(nn.Dense(self.width, name="hidden_1")(h))
        return nn.Dense(self.num_classes, name="head")(h)


class Mnist1dCNN(nn.Module):
    """The MNIST-1D CNN (module docstring); input ``[B, L]`` (or ``[B, L, 1]``), output
    ``[B, num_classes]``."""

    num_classes: int
    channels: int = 25

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = x.reshape((x.shape[0], -1, 1))  # [B, L, 1]: one input channel
        for i, kernel in enumerate((5, 3, 3)):
            conv = nn.Conv(
                self.channels, (kernel,), strides=(2,), padding=((1, 1),), name=f"conv_{i}"
            )
            x = nn.relu(conv(x))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes, name="head")(x)
