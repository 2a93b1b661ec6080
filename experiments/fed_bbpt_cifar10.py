"""Full scale: Fed-BBPT, a prompt for a frozen ResNet-18-GN, trained by zeroth order.

    python -m fedjax_lab.pretrained.make --names cifar10_resnet18 --data-dir DIR
    fedjax-lab run --config experiments/fed_bbpt_cifar10.py

The frozen model is ResNet-18-GN pre-trained on CIFAR-10 (the ``cifar10_resnet18`` recipe,
made first); the clients prompt it on ``cifar10_inverted``, a domain shift with the same
labels. 100 clients with Dirichlet(0.3) label skew, 10 per round, 500 rounds of 20 local
steps of batch 128; two-point estimates with 4 directions. ``zo.white_box=True`` is the
white-box reference. Needs the prepared TFDS cifar10.
"""

from fedjax_lab.specs import config as config_lib


def get_config():
    c = config_lib.get_config("fed_bbpt")
    c.dataset = "cifar10_inverted"
    c.model = "pretrained"
    c.zo.model = "cifar10_resnet18"
    c.num_clients = 100
    c.rounds = 500
    c.eval_every = 20
    c.data.alpha = 0.3
    c.server.clients_per_round = 10
    c.local.steps = 20
    c.local.batch_size = 128
    return c
