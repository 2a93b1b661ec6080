"""Multi-layer perceptron classifier."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
    """Fully connected classifier: flatten, [Dense + ReLU] * len(hidden_sizes), Dense head.

    With the default ``hidden_sizes=(200, 200)`` this is the "2NN" of the FedAvg
    paper (McMahan et al. 2017, "Communication-Efficient Learning of Deep
    Networks from Decentralized Data"). Every example is flattened over all axes
    except the leading batch axis; the output is ``[B, num_classes]`` logits.
    """

    num_classes: int
    hidden_sizes: Sequence[int] = (200, 200)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden_sizes):
            x = nn.relu(nn.Dense(width, name=f"hidden_{i}")(x))
        return nn.Dense(self.num_classes, name="head")(x)
