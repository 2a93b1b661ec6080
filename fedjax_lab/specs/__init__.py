"""Algorithms as the config knows them: the registry, the config sections and the builders.

This package sits on top of the maths (:mod:`fedjax_lab.algorithms`, which knows nothing of
configs): each family's module declares the config section of its algorithms (``Field``
s) and a builder from a resolved config to the factory's arguments.

* :mod:`fedjax_lab.specs.config`: the experiment config (``get_config``, ``resolve``,
  overrides, the shared sections);
* :mod:`fedjax_lab.specs.registry`: algorithms by name (``build_algorithm``, ``register``);
* :mod:`fedjax_lab.specs.base`: :class:`AlgorithmSpec` and the shared sections' builders;
* :mod:`fedjax_lab.specs.fields`: :class:`Field`, one config key;
* one module per family: ``server``, ``decentralized``, ``private``, ``personalized``,
  ``lottery``, ``zeroth_order``.
"""

from fedjax_lab.specs.base import AlgorithmSpec
from fedjax_lab.specs.fields import Field
from fedjax_lab.specs.registry import available_algorithms
from fedjax_lab.specs.registry import build_algorithm
from fedjax_lab.specs.registry import register
from fedjax_lab.specs.registry import spec
from fedjax_lab.specs.registry import unregister

__all__ = (
    "AlgorithmSpec",
    "Field",
    "available_algorithms",
    "build_algorithm",
    "register",
    "spec",
    "unregister",
)
