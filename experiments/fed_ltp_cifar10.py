"""Full scale: Fed-LTP, lottery-ticket pruning with DP-SGD clients, VGG-11-GN on CIFAR-10.

    fedjax-lab run --config experiments/fed_ltp_cifar10.py --set ltp.target_sparsity=0.0

100 clients with Dirichlet(0.3) label skew, 10 per round, 300 rounds of 20 local steps of
batch 50 with per-example clipping at 1 and noise multiplier 1 (zCDP, delta 1e-5). The
server prunes 20% of the remaining weights every 5 rounds until 80% are gone;
``ltp.target_sparsity=0.0`` is dense DP training. Needs the prepared TFDS cifar10.
"""

from fedjax_lab.specs import config as config_lib


def get_config():
    c = config_lib.get_config("fed_ltp")
    c.dataset = "cifar10"
    c.model = "vgg11"
    c.num_clients = 100
    c.rounds = 300
    c.eval_every = 20
    c.data.alpha = 0.3
    c.server.clients_per_round = 10
    c.local.steps = 20
    c.local.batch_size = 50
    c.local.learning_rate = 0.1
    c.local.lr_decay = 0.998
    c.dp.clip_norm = 1.0
    c.dp.noise_multiplier = 1.0
    c.dp.delta = 1e-5
    c.ltp.target_sparsity = 0.8
    c.ltp.prune_rate = 0.2
    c.ltp.prune_every = 5
    return c
