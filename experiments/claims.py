"""The seed papers' claims, each a declared experiment set (:mod:`fedjax_lab.reproduce`).

``fedjax-lab reproduce --list`` lists them; ``fedjax-lab reproduce NAME`` runs one over
seeds 0, 1 and 2 at small scale (the embedded data, on a CPU) and writes its section of
``experiments/results/RESULTS.md``. The small-scale settings are those of the family
comparisons (``experiments/*_comparison.py``); the settings in words are in each claim.
"""

from fedjax_lab.reproduce import Beats
from fedjax_lab.reproduce import Claim
from fedjax_lab.reproduce import Close
from fedjax_lab.reproduce import Ordered

# The digits with 100 clients, as the comparisons run them.
DIGITS = {"dataset": "digits", "model": "mlp", "num_clients": 100, "rounds": 100}
PATHOLOGICAL = {**DIGITS, "data.partition": "pathological", "data.classes_per_client": 2}

CLAIMS = [
    Claim(
        name="dfedsam_beats_dfedavg",
        statement="DFedSAM beats DFedAvg, more so under strong heterogeneity",
        members={
            "dfedavg, alpha 0.3": ("dfedavg", {}),
            "dfedsam, alpha 0.3": ("dfedsam", {}),
            "dfedavg, alpha 0.05": ("dfedavg", {"data.alpha": 0.05}),
            "dfedsam, alpha 0.05": ("dfedsam", {"data.alpha": 0.05}),
        },
        rules=(
            Beats("dfedavg, alpha 0.3", "dfedsam, alpha 0.3"),
            Beats("dfedavg, alpha 0.05", "dfedsam, alpha 0.05"),
        ),
        scales={"small": {**DIGITS, "communication.topology": "ring"}},
        setting="digits, mlp, 100 clients on a ring, Dirichlet label skew, 100 rounds of 10 "
        "local steps, SAM radius 0.05",
    ),
    Claim(
        name="mgs_gossip_steps",
        statement="DFedSAM-MGS: more gossip steps Q improve consensus and accuracy",
        members={f"Q = {q}": ("dfedsam_mgs", {"communication.gossip_steps": q}) for q in (1, 2, 4)},
        rules=(
            Ordered(("Q = 1", "Q = 2", "Q = 4"), "consensus_distance", lower_is_better=True),
            Ordered(("Q = 1", "Q = 2", "Q = 4")),
        ),
        scales={"small": {**DIGITS, "communication.topology": "ring"}},
        setting="digits, mlp, 100 clients on a ring, Dirichlet(0.3), 100 rounds",
    ),
    Claim(
        name="partial_personalization",
        statement="DFedAlt: partial personalization beats full-model sharing on label skew",
        members={
            "dfedavg (ring)": ("dfedavg", {"communication.topology": "ring"}),
            "dfedalt (ring)": ("dfedalt", {"communication.topology": "ring"}),
        },
        rules=(Beats("dfedavg (ring)", "dfedalt (ring)"),),
        scales={"small": PATHOLOGICAL},
        setting="digits, mlp, 100 clients with 2 classes each, 100 rounds; dfedalt 5 head "
        "then 5 body steps",
    ),
    Claim(
        name="dfedsalt_beats_dfedalt",
        statement="DFedSalt improves on DFedAlt",
        members={
            "dfedalt (ring)": ("dfedalt", {"communication.topology": "ring"}),
            "dfedsalt (ring)": ("dfedsalt", {"communication.topology": "ring"}),
        },
        rules=(Beats("dfedalt (ring)", "dfedsalt (ring)"),),
        scales={"small": PATHOLOGICAL},
        setting="digits, mlp, 100 clients with 2 classes each, 100 rounds",
    ),
    Claim(
        name="push_sum_directed",
        statement="DFedPGP: push-sum on directed graphs beats undirected and naive directed mixing",
        members={
            "dfedalt (ring, undirected)": ("dfedalt", {"communication.topology": "ring"}),
            "dfedalt (random_in_neighbours, naive)": (
                "dfedalt",
                {"communication.topology": "random_in_neighbours"},
            ),
            "dfedpgp (random_out_neighbours, push-sum)": ("dfedpgp", {}),
        },
        rules=(
            Beats("dfedalt (ring, undirected)", "dfedpgp (random_out_neighbours, push-sum)"),
            Beats(
                "dfedalt (random_in_neighbours, naive)",
                "dfedpgp (random_out_neighbours, push-sum)",
            ),
        ),
        scales={"small": PATHOLOGICAL},
        setting="digits, mlp, 100 clients with 2 classes each, 100 rounds; in- and out-degree 10",
    ),
    Claim(
        name="fes_ptzo_close_to_fes_pit",
        statement="FES-PTZO stays close to FES-PIT in accuracy, with no backward pass on the "
        "server",
        members={"fes_pit": ("fes_pit", {}), "fes_ptzo": ("fes_ptzo", {})},
        rules=(Close("fes_pit", "fes_ptzo", 0.05),),
        scales={"small": {"num_clients": 100, "rounds": 100}},
        setting="digits_vit (pre-trained on digits 0-4) tuned on digits_high, 100 clients, "
        "10 per round, 100 rounds; within 5 points",
    ),
]
