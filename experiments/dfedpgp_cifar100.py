"""Full scale: DFedPGP (push-sum personalization on directed graphs) on CIFAR-100.

    fedjax-lab run --config experiments/dfedpgp_cifar100.py

The personalization of experiments/dfedalt_cifar10.py (ResNet-18-GN, personal head, 4 head
steps then 16 body steps, 500 rounds) on CIFAR-100 with Dirichlet(0.3) label skew, each of
the 100 clients pushing to 10 random out-neighbours per round. Needs the prepared TFDS
cifar100.
"""

import pathlib

from fedjax_lab.specs import config as config_lib


def get_config():
    base = config_lib.load_config_file(pathlib.Path(__file__).with_name("dfedalt_cifar10.py"))
    c = config_lib.with_algorithm(base, "dfedpgp")
    c.dataset = "cifar100"
    c.data.partition = "dirichlet"
    c.data.alpha = 0.3
    c.communication.topology = "random_out_neighbours"
    c.communication.topology_k = 10
    return c
