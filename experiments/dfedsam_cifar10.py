"""GPU scale: DFedSAM and its decentralized baselines on CIFAR-10, as in the seed papers.

    fedjax-lab run --config experiments/dfedsam_cifar10.py --set algorithm=dfedavgm

Needs the prepared TFDS cifar10 (see README, "Datasets"). 100 clients, Dirichlet(0.3) label
skew, each client averaging with 10 random in-neighbours per round (the released code's
default topology), ResNet-18 with GroupNorm, 5 local epochs of batch 128 (about 20 steps over
500 examples), lr 0.1 decayed by 0.998 per round, 1000 rounds.
"""

from fedjax_lab.specs import config as config_lib


def get_config():
    c = config_lib.get_config()
    c.algorithm = "dfedsam"
    c.dataset = "cifar10"
    c.model = "resnet18"
    c.num_clients = 100
    c.rounds = 1000
    c.eval_every = 20
    c.checkpoint_every = 50

    c.data.alpha = 0.3
    c.data.test_examples_per_client = 100

    c.local.steps = 20
    c.local.batch_size = 128
    c.local.learning_rate = 0.1
    c.local.lr_decay = 0.998
    # local.momentum stays None: 0.9 for dfedavgm (its default), none for the others.

    c.sam.rho = 0.05  # SAM radius; sweep {0.01, 0.05, 0.1} for a reproduction

    c.communication.topology = "random_in_neighbours"
    c.communication.topology_k = 10
    return c
