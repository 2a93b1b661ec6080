"""CIFAR ResNet-18 with GroupNorm instead of BatchNorm (NHWC inputs)."""

import flax.linen as nn
import jax.numpy as jnp


class BasicBlock(nn.Module):
    """ResNet basic block: two conv3x3 + GroupNorm, with a projection shortcut.

    The shortcut is a 1x1 conv + GroupNorm whenever the stride or the channel
    count changes, and the identity otherwise. Convs have no bias.
    """

    features: int
    strides: int = 1
    num_groups: int = 32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        s = (self.strides, self.strides)
        y = nn.Conv(self.features, (3, 3), s, padding="SAME", use_bias=False, name="conv_0")(x)
        y = nn.relu(nn.GroupNorm(num_groups=self.num_groups, name="norm_0")(y))
        y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, name="conv_1")(y)
        y = nn.GroupNorm(num_groups=self.num_groups, name="norm_1")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), s, use_bias=False, name="shortcut_conv")(x)
            x = nn.GroupNorm(num_groups=self.num_groups, name="shortcut_norm")(x)
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """CIFAR ResNet-18 (He et al. 2016) with GroupNorm, as in Hsieh et al. 2020.

    Hsieh et al. 2020, "The Non-IID Data Quagmire of Decentralized Machine
    Learning", replace BatchNorm by GroupNorm so the model is stateless and
    robust to non-IID clients. Layout: conv3x3-64 stem (stride 1, no max-pool)
    + GroupNorm + ReLU -> four stages of two BasicBlocks (64, 128, 256, 512
    channels; strides 1, 2, 2, 2) -> global average pool -> Dense
    ``num_classes`` (``head``). Only a ``params`` collection is created.
    """

    num_classes: int
    num_groups: int = 32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.Conv(64, (3, 3), padding="SAME", use_bias=False, name="stem_conv")(x)
        x = nn.relu(nn.GroupNorm(num_groups=self.num_groups, name="stem_norm")(x))
        for stage, (features, strides) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
            for block in range(2):
                x = BasicBlock(
                    features,
                    strides if block == 0 else 1,
                    self.num_groups,
                    name=f"stage{stage + 1}_block{block}",
                )(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)
