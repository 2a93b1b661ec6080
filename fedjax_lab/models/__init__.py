"""Flax linen classifiers and a small registry to build them by name.

Every model maps a float32 batch to ``[B, num_classes]`` logits, has no mutable
state (only a ``params`` collection) and names its last Dense layer ``head``.

The CNNs take ``conv="auto" | "flax" | "custom"``: ``"custom"`` builds their convolutions
and poolings from :mod:`fedjax_lab.models.conv` (gradients XLA:CPU runs fast inside
``lax.scan``/``lax.map`` and under ``vmap``), ``"auto"`` picks it on the CPU backend and
``flax.linen`` layers elsewhere. Parameters are the same either way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fedjax_lab import validation

from fedjax_lab.models.cnn import EmnistCNN
from fedjax_lab.models.cnn import FedAvgCNN
from fedjax_lab.models.conv import Conv
from fedjax_lab.models.conv import conv2d
from fedjax_lab.models.conv import max_pool
from fedjax_lab.models.mlp import MLP
from fedjax_lab.models.mnist1d import Mnist1dCNN
from fedjax_lab.models.mnist1d import Mnist1dMLP
from fedjax_lab.models.prompt import PromptGenerator
from fedjax_lab.models.prompt import PromptedModel
from fedjax_lab.models.resnet import ResNet18
from fedjax_lab.models.vgg import VGG11
from fedjax_lab.models.vit import SplitViT
from fedjax_lab.models.vit import ViT

__all__ = [
    "Conv",
    "EmnistCNN",
    "FedAvgCNN",
    "MLP",
    "Mnist1dCNN",
    "Mnist1dMLP",
    "PromptGenerator",
    "PromptedModel",
    "ResNet18",
    "SplitViT",
    "VGG11",
    "ViT",
    "available_models",
    "conv2d",
    "init_params",
    "make_model",
    "max_pool",
]

_REGISTRY: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "fedavg_cnn": FedAvgCNN,
    "emnist_cnn": EmnistCNN,
    "mnist1d_mlp": Mnist1dMLP,
    "mnist1d_cnn": Mnist1dCNN,
    "resnet18": ResNet18,
    "vgg11": VGG11,
    "vit": ViT,
}


def available_models() -> tuple[str, ...]:
    """Names accepted by :func:`make_model`."""
    return tuple(_REGISTRY)


def make_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Builds the model registered as ``name`` with ``num_classes`` outputs.

    ``kwargs`` are the model's other fields (``hidden_sizes`` for ``"mlp"``,
    ``num_groups`` for ``"resnet18"``/``"vgg11"``, ``conv`` for the two CNNs, ``patch_size``,
    ``dim``, ``depth``, ``heads``, ``mlp_ratio`` for ``"vit"``). Raises
    ValueError for an unknown name and TypeError for a keyword the model does not accept.
    """
    validation.check_name("model", name, _REGISTRY)
    cls = _REGISTRY[name]
    accepted = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.name not in ("num_classes", "parent", "name")
    ]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"Model {name!r} got unexpected keyword argument(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or 'none'}."
        )
    return cls(num_classes=num_classes, **kwargs)


def init_params(model: nn.Module, input_shape: tuple[int, ...], key: jax.Array) -> Any:
    """Initializes ``model`` on a zero batch of shape ``(1, *input_shape)``; returns params."""
    dummy = jnp.zeros((1, *input_shape), jnp.float32)
    return model.init(key, dummy)["params"]
