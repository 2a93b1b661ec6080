"""Small experiment configs for the tests that run experiments: 6 clients, batches of 8,
20 test examples per client, no progress bar.

``small_config(values, **kwargs)`` is the default config with ``SMALL``, then what a test
sets on top (as ``config.update`` takes it: dotted keys or nested dicts; ``algorithm``
switches the algorithm first). ``resumable_config`` adds ``RESUMABLE``: short runs that
checkpoint often, for the tests that stop, resume and extend runs.
"""

from fedjax_lab.specs import config as config_lib

SMALL = {
    "num_clients": 6,
    "local.batch_size": 8,
    "data.test_examples_per_client": 20,
    "progress": False,
}
# 3 local steps, an evaluation every 3 rounds, a checkpoint every 2 rounds (2 kept).
RESUMABLE = {
    "local.steps": 3,
    "eval_every": 3,
    "checkpoint_every": 2,
    "keep_checkpoints": 2,
}


def small_config(values=None, **kwargs):
    """The default config with ``SMALL``, then ``values`` and ``kwargs`` (kwargs win)."""
    config = config_lib.update(config_lib.get_config(), SMALL)
    return config_lib.update(config, values, **kwargs)


def resumable_config(values=None, **kwargs):
    """``small_config`` with ``RESUMABLE``, then ``values`` and ``kwargs``."""
    return config_lib.update(small_config(RESUMABLE), values, **kwargs)


def overrides(values):
    """``values`` as the command line's ``--set`` items: ``["num_clients=6", ...]``."""
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in values.items()]


# ``resumable_config()`` on the command line.
RESUMABLE_OVERRIDES = overrides({**SMALL, **RESUMABLE})
