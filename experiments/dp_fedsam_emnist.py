"""Full scale: client-level DP (DP-FedAvg, DP-FedSAM, DP-FedSAM-top_k) on EMNIST.

    fedjax-lab run --config experiments/dp_fedsam_emnist.py --set algorithm=dp_fedavg

The released code's EMNIST setting (ALGORITHMS.md): 500 clients with Dirichlet(0.3) label
skew, 10% sampled per round (Poisson, q = 0.1), the whole update clipped at 0.2, noise
multiplier 0.95, delta 5e-3 accounted with RDP (epsilon 7.82 after 200 rounds), SAM radius
0.5 (the SAM members' own default, ``sam.rho`` left unset so that DP-FedAvg, which has no
SAM, runs from this file too), lr 0.1 decayed by 0.998 per round, batch 32, the EMNIST CNN. Each client holds about
225 examples; 35 local steps are 5 epochs. Needs the prepared TFDS emnist/balanced.
"""

from fedjax_lab.specs import config as config_lib


def get_config():
    c = config_lib.get_config("dp_fedsam")
    c.dataset = "emnist"
    c.model = "emnist_cnn"
    c.num_clients = 500
    c.rounds = 200
    c.eval_every = 10
    c.data.alpha = 0.3
    c.server.clients_per_round = 50
    c.local.steps = 35
    c.local.batch_size = 32
    c.local.learning_rate = 0.1
    c.local.lr_decay = 0.998
    c.dp.clip_norm = 0.2
    c.dp.noise_multiplier = 0.95
    c.dp.delta = 5e-3
    c.dp.sampling = "poisson"
    c.dp.accountant = "rdp"
    return c
