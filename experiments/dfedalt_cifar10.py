"""Full scale: decentralized partial personalization (DFedAlt, DFedSalt) on CIFAR-10.

    fedjax-lab run --config experiments/dfedalt_cifar10.py --set algorithm=dfedsalt

The data, model and graph of experiments/dfedsam_cifar10.py (100 clients, ResNet-18-GN, 10
random in-neighbours), with pathological label skew (2 classes per client) and 500 rounds.
The classifier head is personal: each round trains it for 4 steps (about one epoch of batch
128) at lr 0.001 with the body frozen, then the shared body for 16 steps at lr 0.1, decayed
by 0.998 per round. Needs the prepared TFDS cifar10.
"""

import pathlib

from fedjax_lab.specs import config as config_lib


def get_config():
    base = config_lib.load_config_file(pathlib.Path(__file__).with_name("dfedsam_cifar10.py"))
    c = config_lib.with_algorithm(base, "dfedalt")
    c.rounds = 500
    c.data.partition = "pathological"
    c.data.classes_per_client = 2
    c.personal.layers = "head"
    c.personal.head_steps = 4
    c.personal.head_learning_rate = 0.001
    c.personal.body_steps = 16
    c.personal.body_learning_rate = 0.1
    c.sam.rho = 0.05  # the radius of DFedSalt's body phase
    return c
