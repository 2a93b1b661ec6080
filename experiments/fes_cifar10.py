"""Full scale: FES-PIT and FES-PTZO, split tuning of a ViT pre-trained on CIFAR-100.

    python -m fedjax_lab.pretrained.make --names cifar100_vit --data-dir DIR
    fedjax-lab run --config experiments/fes_cifar10.py --set algorithm=fes_ptzo

The server holds the frozen body of a ViT pre-trained on CIFAR-100 (the ``cifar100_vit``
recipe, made first: patch 4, width 192, depth 6); the clients hold its patch embedding and
a new 10-class head for CIFAR-10. 100 clients with Dirichlet(0.3) label skew, 10 per round,
300 rounds of 20 local steps of batch 64. Needs the prepared TFDS cifar10 and cifar100.
"""

from fedjax_lab.specs import config as config_lib


def get_config():
    c = config_lib.get_config("fes_pit")
    c.dataset = "cifar10"
    c.model = "pretrained"
    c.zo.model = "cifar100_vit"
    c.num_clients = 100
    c.rounds = 300
    c.eval_every = 20
    c.data.alpha = 0.3
    c.server.clients_per_round = 10
    c.local.steps = 20
    c.local.batch_size = 64
    return c
