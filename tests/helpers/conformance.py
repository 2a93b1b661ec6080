"""The conformance suite's algorithms and inputs: every registered algorithm built on N
clients from its defaults with small settings, and a round's inputs for it.

``tests/algorithms/test_conformance.py`` checks them, in this process and in an 8-device
one (its script imports this module).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_lab import data
from fedjax_lab import objectives
from fedjax_lab import specs
from fedjax_lab.specs import config as config_lib
from tests.helpers import numpy_reference as ref

N, B, D, C = 8, 4, 6, 3
DEFAULT_STEPS = 3


def apply_fn(params, x):
    return x @ params["hidden"]["w"] + params["head"]["b"]


LOSS = objectives.cross_entropy_loss(apply_fn)


SMALL_SETTINGS = {
    "server.clients_per_round": 4,
    "local.learning_rate": 0.2,
    "personal.head_steps": 1,
    "personal.body_steps": DEFAULT_STEPS - 1,
}


def algorithm_config(name):
    """The algorithm's defaults on N clients, with the small settings it reads."""
    c = config_lib.update(config_lib.get_config(name), num_clients=N)
    c = config_lib.update(c, {"local.steps": DEFAULT_STEPS})  # for those that fix their steps
    read = specs.registry.keys_read(c)
    small = {k: v for k, v in SMALL_SETTINGS.items() if k in read}
    return config_lib.resolve(config_lib.update(c, small))


@functools.cache
def pretrained_problem(name):
    """An algorithm that tunes a pre-trained model is checked on that model: its module and
    initial parameters from the spec, inputs shaped like its dataset's."""
    c = algorithm_config(name)
    if c.model != "pretrained":
        return None
    classes, shape = data.task_shape(c.dataset)
    spec = specs.spec(name)
    module, params = spec.model(c, classes, shape, jax.random.key(0))
    loss = objectives.cross_entropy_loss(lambda p, x: module.apply({"params": p}, x))
    return loss, params, shape, classes


def build(name):
    problem = pretrained_problem(name)
    loss = LOSS if problem is None else problem[0]
    return specs.build_algorithm(algorithm_config(name), loss)


def inputs(alg, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "hidden": {"w": rng.normal(size=(D, C)).astype(np.float32) * 0.5},
        "head": {"b": rng.normal(size=(C,)).astype(np.float32) * 0.1},
    }
    shape, classes = (D,), C
    if (problem := pretrained_problem(alg.name)) is not None:
        _, params, shape, classes = problem
    k, m = alg.local_steps or DEFAULT_STEPS, alg.cohort_size
    batches = {
        "x": rng.normal(size=(m, k, B, *shape)).astype(np.float32),
        "y": rng.integers(0, classes, size=(m, k, B)).astype(np.int32),
    }
    mixing = jnp.asarray(ref.ring_matrix(N), jnp.float32) if alg.decentralized else None
    return alg.init(params), mixing, batches
