"""Small convolutional classifiers from the FedAvg literature (NHWC inputs)."""

import flax.linen as nn
import jax.numpy as jnp


class FedAvgCNN(nn.Module):
    """CIFAR CNN of the FedAvg paper (McMahan et al. 2017).

    conv5x5-64 (SAME) + ReLU -> maxpool 3x3/2 (SAME) -> conv5x5-64 (SAME) + ReLU
    -> maxpool 3x3/2 (SAME) -> flatten -> Dense 384 + ReLU -> Dense 192 + ReLU
    -> Dense ``num_classes`` (``head``). Input ``[B, H, W, C]``, output logits
    ``[B, num_classes]``.
    """

    num_classes: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i in range(2):
            x = nn.relu(nn.Conv(64, (5, 5), padding="SAME", name=f"conv_{i}")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(384, name="dense_0")(x))
        x = nn.relu(nn.Dense(192, name="dense_1")(x))
        return nn.Dense(self.num_classes, name="head")(x)


class EmnistCNN(nn.Module):
    """EMNIST CNN of the FedAvg paper (McMahan et al. 2017; also Reddi et al. 2021).

    conv5x5-32 (SAME) + ReLU -> maxpool 2x2/2 -> conv5x5-64 (SAME) + ReLU ->
    maxpool 2x2/2 -> flatten -> Dense 512 + ReLU -> Dense ``num_classes``
    (``head``). Pooling uses VALID padding, so odd sizes are floored. Input
    ``[B, H, W, C]``, output logits ``[B, num_classes]``.
    """

    num_classes: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i, width in enumerate((32, 64)):
            x = nn.relu(nn.Conv(width, (5, 5), padding="SAME", name=f"conv_{i}")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(512, name="dense_0")(x))
        return nn.Dense(self.num_classes, name="head")(x)
