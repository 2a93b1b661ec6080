"""GPU scale: the server-based baselines FedAvg and FedSAM on CIFAR-10.

    fedjax-lab run --config experiments/fedsam_cifar10.py --set algorithm=fedavg

Needs the prepared TFDS cifar10 (see README, "Datasets"). 100 clients with 10% sampled per
round, otherwise the settings of experiments/dfedsam_cifar10.py.
"""

from fedjax_lab import config as config_lib


def get_config():
    c = config_lib.get_config()
    c.algorithm = "fedsam"
    c.dataset = "cifar10"
    c.model = "resnet18"
    c.num_clients = 100
    c.clients_per_round = 10
    c.server_learning_rate = 1.0
    c.rounds = 1000
    c.alpha = 0.3
    c.local_steps = 20
    c.batch_size = 128
    c.learning_rate = 0.1
    c.lr_decay = 0.998
    c.rho = 0.05
    c.test_examples_per_client = 100
    c.eval_every = 20
    c.checkpoint_every = 50
    return c
