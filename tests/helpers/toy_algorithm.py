"""A toy algorithm that exercises the runner contract, and a script that runs it.

It is FedAvg plus: a metric of its own (``toy_metric``), a second kind of message
(``seeds_sent``, 8 bytes each, 3 per sampled client) and a host hook whose state counts the
rounds and sums the training losses.
``python -m tests.helpers.toy_algorithm WORKDIR ROUNDS [--resume]`` runs it from the command
line's code path (used by the kill -9 test).
"""

import dataclasses
import sys

import jax.numpy as jnp
import numpy as np

from fedjax_lab import clients
from fedjax_lab.algorithms import base
from fedjax_lab.specs import base as spec_base
from fedjax_lab.specs import registry
from fedjax_lab.algorithms import server
from fedjax_lab.runner import experiment
from tests.helpers import configs

SEED_BYTES = 8


def host_hook() -> base.HostHook:
    def init():
        return {"rounds": np.zeros((), np.int64), "loss_sum": np.zeros((), np.float64)}

    def after_round(state, round_index, metrics):
        state = {
            "rounds": np.asarray(state["rounds"] + 1, np.int64),
            "loss_sum": np.asarray(state["loss_sum"] + metrics["train_loss"], np.float64),
        }
        return state, {
            "host_rounds": int(state["rounds"]),
            "host_loss_sum": float(state["loss_sum"]),
        }

    return base.HostHook(init, after_round)


def build(c, loss_fn):
    inner = server.fedavg(
        loss_fn, spec_base.local_sgd(c), name="toy", **spec_base.server_kwargs(c)
    )

    def round_fn(state, mixing, batches, key, execution=clients.VMAP):
        state, metrics = inner.round(state, mixing, batches, key, execution)
        metrics["toy_metric"] = 2.0 * metrics["train_loss"]
        metrics["seeds_sent"] = jnp.asarray(3 * inner.cohort_size, jnp.int32)
        return state, metrics

    return dataclasses.replace(
        inner,
        round=round_fn,
        exchange=inner.exchange._replace(
            message_bytes=lambda p: {**inner.message_bytes(p), "seeds_sent": SEED_BYTES}
        ),
        host_hook=host_hook(),
    )


TOY = spec_base.AlgorithmSpec(name="toy", summary="test algorithm", build=build)


def ensure_registered():
    if "toy" not in registry.available_algorithms():
        registry.register(TOY)


def small_config(rounds=4, **values):
    """The toy algorithm on the small config, evaluated and checkpointed every round."""
    toy = {
        "algorithm": "toy",
        "rounds": rounds,
        "eval_every": 1,
        "checkpoint_every": 1,
        "local.steps": 2,
        "server.clients_per_round": 2,
    }
    return configs.small_config(toy, **values)


if __name__ == "__main__":
    ensure_registered()
    resume = "--resume" in sys.argv
    experiment.run(small_config(rounds=int(sys.argv[2])), sys.argv[1], resume=resume)
