"""The seed papers' claims, each a declared experiment set (:mod:`fedjax_lab.runner.reproduce`).

``fedjax-lab reproduce --list`` lists them; ``fedjax-lab reproduce NAME`` runs one over
seeds 0 to 4 at small scale (the embedded data, on a CPU) and writes its section of
``experiments/results/RESULTS.md``. The small-scale settings are the algorithms' defaults
on the embedded data, in words in each claim; ``--scale medium`` runs them on MNIST-1D with
its CNN (generated, no download; ``MEDIUM``); ``--scale full`` runs a paper's main setting,
one of the config files beside this one. Each claim's rules judge accuracy against a
smallest effect that matters of half a point (``Claim.smallest_effect``).
"""

import math
import pathlib

import jax.numpy as jnp
import numpy as np

from fedjax_lab import gossip
from fedjax_lab import topology
from fedjax_lab.runner.reproduce import Beats
from fedjax_lab.runner.reproduce import Claim
from fedjax_lab.runner.reproduce import Close
from fedjax_lab.runner.reproduce import GainExceeds
from fedjax_lab.runner.reproduce import Near
from fedjax_lab.runner.reproduce import Ordered

# The digits with 100 clients and 100 rounds: the small scale.
DIGITS = {"dataset": "digits", "model": "mlp", "num_clients": 100, "rounds": 100}
PATHOLOGICAL = {**DIGITS, "data.partition": "pathological", "data.classes_per_client": 2}

# MNIST-1D with its CNN, 100 clients, 100 rounds: the medium scale, where the members are
# not saturated (the digits' MLP reaches 0.94-0.98 whatever the algorithm).
MEDIUM = {"dataset": "mnist1d", "model": "mnist1d_cnn", "num_clients": 100, "rounds": 100}
MEDIUM_PATHOLOGICAL = {**MEDIUM, "data.partition": "pathological", "data.classes_per_client": 2}

RING = topology.ring(16)


def graph(name: str) -> dict:
    """The overrides that put a member on topology ``name``; a full-scale config's neighbour
    count (``communication.topology_k``) applies to the random graphs only."""
    k = {} if name.startswith("random") else {"communication.topology_k": None}
    return {"communication.topology": name, **k}


# Members that several claims declare; run_claim shares their runs.
DP_FEDSAM = ("dp_fedsam", {"sam.rho": 0.5})  # the released code's radius
DFEDALT_RING = ("dfedalt", graph("ring"))

# The full-scale configs: each paper's main setting (their docstrings say what they need).
HERE = pathlib.Path(__file__).parent
DFEDSAM_CIFAR10 = HERE / "dfedsam_cifar10.py"
DP_EMNIST = HERE / "dp_fedsam_emnist.py"
DFEDALT_CIFAR10 = HERE / "dfedalt_cifar10.py"
DFEDPGP_CIFAR100 = HERE / "dfedpgp_cifar100.py"
FED_BBPT_CIFAR10 = HERE / "fed_bbpt_cifar10.py"
FES_CIFAR10 = HERE / "fes_cifar10.py"
FED_LTP_CIFAR10 = HERE / "fed_ltp_cifar10.py"


# The MNIST-1D benchmark's own setting, centralized: its 5,000 signals (4,000 to train),
# batches of 100, Adam at 1e-2 for 6,000 steps. One client holding all the data whose single
# local SGD step of rate 1 hands its gradient to a server Adam is exactly centralized Adam.
MNIST1D_CENTRAL = {
    "dataset": "mnist1d",
    "data.mnist1d_samples": 5000,
    "data.partition": "iid",
    "data.test_examples_per_client": 1000,
    "num_clients": 1,
    "server.clients_per_round": 1,
    "local.steps": 1,
    "local.batch_size": 100,
    "local.learning_rate": 1.0,
    "local.lr_decay": 1.0,  # no decay: 0.998 per round would shrink Adam's steps to nothing
    "server.optimizer": "adam",
    "server.learning_rate": 0.01,
    "rounds": 6000,
    "eval_every": 1000,
    "checkpoint_every": 1000,
}
MNIST1D_SOURCE = "the MNIST-1D README's table and its paper's abstract"


def _gossip_decay(label: str, seed: int) -> dict[str, float]:
    """The consensus error's decay per gossip step, log(e_60 / e_20) / 40, of the library's
    gossip on a 16-client ring from a random start drawn from ``seed``; or its theory,
    log |lambda_2| (``e_Q = ||W^Q x - mean||`` falls as ``|lambda_2|^Q`` once the slowest
    mode dominates)."""
    if label.startswith("theory"):
        return {"decay_per_step": math.log(RING.second_eigenvalue_modulus())}
    x = jnp.asarray(np.random.default_rng(seed).normal(size=(16, 8)), jnp.float32)
    w = jnp.asarray(RING.matrix(), jnp.float32)
    error = lambda q: float(jnp.linalg.norm((y := gossip.gossip(w, x, q)) - y.mean(axis=0)))
    return {"decay_per_step": math.log(error(60) / error(20)) / 40}


CLAIMS = [
    Claim(
        name="mnist1d_baselines",
        statement="centralized, the MNIST-1D MLP and CNN reach the benchmark's 68% and 94%",
        members={
            "mlp": ("fedavg", {"model": "mnist1d_mlp"}),
            "cnn": ("fedavg", {"model": "mnist1d_cnn"}),
        },
        rules=(
            Near("mlp", 0.68, 0.03, source=MNIST1D_SOURCE),
            Near("cnn", 0.94, 0.03, source=MNIST1D_SOURCE),
        ),
        scales={"small": MNIST1D_CENTRAL},
        setting="MNIST-1D as its paper generates it (5,000 signals from data.seed, 4,000 to "
        "train, 1,000 to test; seed 42 is the paper's own split), one client holding it "
        "all, batches of 100, Adam at 1e-2 on the server of one-step FedAvg (centralized "
        "Adam), 6,000 steps, weight decay 0",
    ),
    Claim(
        name="dfedsam_beats_dfedavg",
        statement="DFedSAM beats DFedAvg, more so under strong heterogeneity and sparse graphs",
        members={
            "dfedavg, alpha 0.3, ring": ("dfedavg", graph("ring")),
            "dfedsam, alpha 0.3, ring": ("dfedsam", graph("ring")),
            "dfedavg, alpha 0.05, ring": (
                "dfedavg",
                {**graph("ring"), "data.alpha": 0.05},
            ),
            "dfedsam, alpha 0.05, ring": (
                "dfedsam",
                {**graph("ring"), "data.alpha": 0.05},
            ),
            "dfedavg, alpha 0.3, fully connected": (
                "dfedavg",
                graph("fully_connected"),
            ),
            "dfedsam, alpha 0.3, fully connected": (
                "dfedsam",
                graph("fully_connected"),
            ),
        },
        rules=(
            Beats("dfedavg, alpha 0.3, ring", "dfedsam, alpha 0.3, ring"),
            Beats("dfedavg, alpha 0.05, ring", "dfedsam, alpha 0.05, ring"),
            GainExceeds(  # more so under strong heterogeneity
                ("dfedavg, alpha 0.05, ring", "dfedsam, alpha 0.05, ring"),
                ("dfedavg, alpha 0.3, ring", "dfedsam, alpha 0.3, ring"),
            ),
            GainExceeds(  # more so on the sparse graph
                ("dfedavg, alpha 0.3, ring", "dfedsam, alpha 0.3, ring"),
                ("dfedavg, alpha 0.3, fully connected", "dfedsam, alpha 0.3, fully connected"),
            ),
        ),
        scales={"small": DIGITS, "medium": MEDIUM, "full": DFEDSAM_CIFAR10},
        setting="digits, mlp, 100 clients on a ring (or fully connected), Dirichlet label "
        "skew, 100 rounds of 10 local steps, SAM radius 0.05",
    ),
    Claim(
        name="mgs_gossip_steps",
        statement="DFedSAM-MGS: more gossip steps Q improve consensus and accuracy, saturating",
        members={
            f"Q = {q}": ("dfedsam_mgs", {"communication.gossip_steps": q}) for q in (1, 2, 4, 8)
        },
        rules=(
            Ordered(
                ("Q = 1", "Q = 2", "Q = 4"),
                "consensus_distance",
                lower_is_better=True,
                smallest_effect=0.0,  # any decrease: the claim is the order, not its size
            ),
            Ordered(("Q = 1", "Q = 2", "Q = 4")),
            GainExceeds(("Q = 1", "Q = 2"), ("Q = 4", "Q = 8")),  # saturating
        ),
        scales={
            "small": {**DIGITS, "communication.topology": "ring"},
            "medium": {**MEDIUM, "communication.topology": "ring"},
            "full": DFEDSAM_CIFAR10,
        },
        setting="digits, mlp, 100 clients on a ring, Dirichlet(0.3), 100 rounds; saturating: "
        "doubling Q from 1 gains more accuracy than doubling it from 4",
    ),
    Claim(
        name="dp_fedsam_beats_dp_fedavg",
        statement="DP-FedSAM beats DP-FedAvg at equal (epsilon, delta)",
        members={
            "dp_fedavg": ("dp_fedavg", {}),
            "dp_fedsam": DP_FEDSAM,
            "dp_fedavg, sigma 0.6": ("dp_fedavg", {"dp.noise_multiplier": 0.6}),
            "dp_fedsam, sigma 0.6": ("dp_fedsam", {"sam.rho": 0.5, "dp.noise_multiplier": 0.6}),
        },
        rules=(
            Beats("dp_fedavg", "dp_fedsam"),
            Close("dp_fedavg", "dp_fedsam", 1e-9, metric="epsilon"),  # the same budget
            Beats("dp_fedavg, sigma 0.6", "dp_fedsam, sigma 0.6"),  # a larger budget
            Close("dp_fedavg, sigma 0.6", "dp_fedsam, sigma 0.6", 1e-9, metric="epsilon"),
        ),
        scales={"small": {**DIGITS, "rounds": 200}, "medium": MEDIUM, "full": DP_EMNIST},
        setting="digits, mlp, 100 clients, Poisson sampling q = 0.1, clip 0.2, sigma 0.95 "
        "(epsilon 7.82) or 0.6 (epsilon 24.3), delta 5e-3, RDP, 200 rounds; SAM radius 0.5",
    ),
    Claim(
        name="topk_beats_dp_fedsam",
        statement="DP-FedSAM-top_k improves on DP-FedSAM at the same budget",
        members={
            "dp_fedsam": DP_FEDSAM,
            "dp_fedsam_topk": ("dp_fedsam_topk", {"sam.rho": 0.5}),
        },
        rules=(
            Beats("dp_fedsam", "dp_fedsam_topk"),
            Close("dp_fedsam", "dp_fedsam_topk", 1e-9, metric="epsilon"),
        ),
        scales={"small": {**DIGITS, "rounds": 200}, "medium": MEDIUM, "full": DP_EMNIST},
        setting="as dp_fedsam_beats_dp_fedavg; top-k keeps half of the coordinates",
    ),
    Claim(
        name="partial_personalization",
        statement="DFedAlt: partial personalization beats full-model sharing on label skew",
        members={
            "dfedavg (ring)": ("dfedavg", graph("ring")),
            "dfedalt (ring)": DFEDALT_RING,
            "fedavg": ("fedavg", {}),
            "fedper": ("fedper", {}),
            "fedrep": ("fedrep", {}),
        },
        rules=(
            Beats("dfedavg (ring)", "dfedalt (ring)"),
            Beats("fedavg", "fedper"),  # with a server too
            Beats("fedper", "dfedalt (ring)"),  # and the decentralized beats the centralized
            Beats("fedrep", "dfedalt (ring)"),
        ),
        scales={"small": PATHOLOGICAL, "medium": MEDIUM_PATHOLOGICAL, "full": DFEDALT_CIFAR10},
        setting="digits, mlp, 100 clients with 2 classes each, 100 rounds; dfedalt 5 head "
        "then 5 body steps; the server-based fedavg, fedper and fedrep sample 10 clients",
    ),
    Claim(
        name="dfedsalt_beats_dfedalt",
        statement="DFedSalt improves on DFedAlt",
        members={
            "dfedalt (ring)": DFEDALT_RING,
            "dfedsalt (ring)": ("dfedsalt", graph("ring")),
        },
        rules=(Beats("dfedalt (ring)", "dfedsalt (ring)"),),
        scales={"small": PATHOLOGICAL, "medium": MEDIUM_PATHOLOGICAL, "full": DFEDALT_CIFAR10},
        setting="digits, mlp, 100 clients with 2 classes each, 100 rounds",
    ),
    Claim(
        name="push_sum_directed",
        statement="DFedPGP: push-sum on directed graphs beats undirected and naive directed mixing",
        members={
            "dfedalt (ring, undirected)": DFEDALT_RING,
            "dfedalt (random_in_neighbours, naive)": (
                "dfedalt",
                graph("random_in_neighbours"),
            ),
            "dfedpgp (random_out_neighbours, push-sum)": ("dfedpgp", {}),
            "dfedpgp (random_in_neighbours, pull-average)": (
                "dfedpgp",
                {"communication.topology": "random_in_neighbours", "personal.push": "off"},
            ),
        },
        rules=(
            Beats("dfedalt (ring, undirected)", "dfedpgp (random_out_neighbours, push-sum)"),
            Beats(
                "dfedalt (random_in_neighbours, naive)",
                "dfedpgp (random_out_neighbours, push-sum)",
            ),
            Beats(  # the released code's variant
                "dfedpgp (random_in_neighbours, pull-average)",
                "dfedpgp (random_out_neighbours, push-sum)",
            ),
        ),
        scales={"small": PATHOLOGICAL, "medium": MEDIUM_PATHOLOGICAL, "full": DFEDPGP_CIFAR100},
        setting="digits, mlp, 100 clients with 2 classes each, 100 rounds; in- and out-degree 10",
    ),
    Claim(
        name="fed_bbpt_prompt",
        statement="Fed-BBPT: a ZO-trained prompt improves the frozen model, approaching "
        "white-box prompt training",
        members={
            "no prompt": ("fed_bbpt", {}),
            "fed_bbpt (ZO)": ("fed_bbpt", {}),
            "fed_bbpt (white box)": ("fed_bbpt", {"zo.white_box": True}),
        },
        rules=(
            Beats("no prompt", "fed_bbpt (ZO)"),
            Close("fed_bbpt (white box)", "fed_bbpt (ZO)", 0.05),
        ),
        scales={"small": {"num_clients": 100, "rounds": 100}, "full": FED_BBPT_CIFAR10},
        setting="the frozen digits_cnn on digits_inverted, 100 clients, 10 per round, 100 "
        "rounds, two-point ZO with 4 directions; within 5 points of the white box",
        untrained=("no prompt",),
    ),
    Claim(
        name="fes_ptzo_close_to_fes_pit",
        statement="FES-PTZO stays close to FES-PIT in accuracy, with no backward pass on the "
        "server",
        members={"fes_pit": ("fes_pit", {}), "fes_ptzo": ("fes_ptzo", {})},
        rules=(Close("fes_pit", "fes_ptzo", 0.05),),
        scales={"small": {"num_clients": 100, "rounds": 100}, "full": FES_CIFAR10},
        setting="digits_vit (pre-trained on digits 0-4) tuned on digits_high, 100 clients, "
        "10 per round, 100 rounds; within 5 points",
    ),
    Claim(
        name="fed_ltp_sparse_close_to_dense",
        statement="Fed-LTP: at high sparsity, accuracy stays close to dense DP training with "
        "fewer bytes",
        members={
            "dense DP-SGD": ("fed_ltp", {"ltp.target_sparsity": 0.0}),
            "fed_ltp, 80% sparse": ("fed_ltp", {}),
        },
        rules=(
            Close("dense DP-SGD", "fed_ltp, 80% sparse", 0.05),
            Beats("dense DP-SGD", "fed_ltp, 80% sparse", "bytes_communicated", True, 0.0),
        ),
        scales={"small": DIGITS, "medium": MEDIUM, "full": FED_LTP_CIFAR10},
        setting="digits, mlp, 100 clients, 10 per round, DP-SGD (clip 1, sigma 1), zCDP, "
        "100 rounds; pruning 20% of the remaining weights every 5 rounds to 80%",
    ),
    Claim(
        name="consensus_orders_as_spectral_gap",
        statement="Theory: DFedSAM's consensus distance orders as the topologies' spectral "
        "gaps 1 - lambda",
        members={
            name: ("dfedsam", graph(name))
            for name in ("ring", "torus", "exponential", "fully_connected")
        },
        rules=(
            Ordered(
                ("ring", "torus", "exponential", "fully_connected"),
                "consensus_distance",
                lower_is_better=True,
                smallest_effect=0.0,  # the claim is the order, not its size
            ),
        ),
        scales={"small": DIGITS, "medium": MEDIUM, "full": DFEDSAM_CIFAR10},
        setting="digits, mlp, 100 clients, Dirichlet(0.3), 100 rounds; gaps grow from the "
        "ring to the fully connected graph, so the consensus distance should fall",
    ),
    Claim(
        name="gossip_error_decays_as_lambda_q",
        statement="Theory: the consensus error after Q gossip steps decays as lambda^Q",
        members={
            "theory (log lambda_2)": ("dfedavg", {}),
            "measured (gossip)": ("dfedavg", {}),
        },
        rules=(
            Close("theory (log lambda_2)", "measured (gossip)", 0.005, metric="decay_per_step"),
        ),
        scales={"small": {}},
        setting="the library's gossip on a 16-client ring (|lambda_2| = 0.949), random "
        "starts, the decay per step between Q = 20 and 60 within 0.005 (10%) of log "
        "|lambda_2|; no training",
        compute=_gossip_decay,
    ),
]
