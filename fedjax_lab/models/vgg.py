"""VGG-11 with GroupNorm instead of BatchNorm (NHWC inputs)."""

import flax.linen as nn
import jax.numpy as jnp

_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(nn.Module):
    """VGG-11 (configuration "A" of Simonyan & Zisserman 2015) with GroupNorm.

    Features: ``[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M]`` where a
    number is conv3x3 (SAME) + GroupNorm + ReLU and ``M`` is maxpool 2x2/2. A
    pool is skipped once the spatial size is already 1, so 8x8 and 28x28 inputs
    work as well as 32x32. Classifier: flatten -> Dense 512 + ReLU -> Dense 512
    + ReLU -> Dense ``num_classes`` (``head``); no dropout, so the model is
    deterministic. GroupNorm (Wu & He 2018) in place of BatchNorm follows Hsieh
    et al. 2020 ("The Non-IID Data Quagmire") and keeps the model stateless.
    """

    num_classes: int
    num_groups: int = 32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        conv_index = 0
        for layer in _VGG11:
            if layer == "M":
                if min(x.shape[1], x.shape[2]) > 1:
                    x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
                continue
            x = nn.Conv(layer, (3, 3), padding="SAME", name=f"conv_{conv_index}")(x)
            x = nn.GroupNorm(num_groups=self.num_groups, name=f"norm_{conv_index}")(x)
            x = nn.relu(x)
            conv_index += 1
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(512, name="dense_0")(x))
        x = nn.relu(nn.Dense(512, name="dense_1")(x))
        return nn.Dense(self.num_classes, name="head")(x)
