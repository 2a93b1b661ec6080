"""GPU scale: the server-based baselines FedAvg and FedSAM on CIFAR-10.

    fedjax-lab run --config experiments/fedsam_cifar10.py --set algorithm=fedavg

The settings of experiments/dfedsam_cifar10.py (data, model, local training, rounds), with
10% of the 100 clients sampled per round by the server instead of gossip.
"""

import pathlib

from fedjax_lab.specs import config as config_lib


def get_config():
    c = config_lib.load_config_file(pathlib.Path(__file__).with_name("dfedsam_cifar10.py"))
    c.algorithm = "fedsam"
    c.server.clients_per_round = 10
    c.server.optimizer = "sgd"
    c.server.learning_rate = 1.0
    return c
