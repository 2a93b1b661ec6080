"""Optax gradient transformations used by the federated algorithms.

SAM, the proximal pull and linear correction terms (``correction``: SCAFFOLD's control
variates, FedDyn's linear term) rewrite a local step's gradient. The client-level DP pieces
(:mod:`fedjax_lab.transforms.dp`: ``clip``, ``gaussian_noise``, ``top_k``) transform a
client's update before it is sent, and ``empty_cohort_noise`` is the server's share of the
noise. The pruning pieces (:mod:`fedjax_lab.transforms.pruning`: ``apply_mask``,
``magnitude_pruning``) keep a broadcast mask on the client and prune the model on the
server. The zeroth-order estimators (:mod:`fedjax_lab.transforms.zeroth_order`:
``zo_gradient``, ``spsa``, ``spsa_gc``) build a gradient from loss values alone, and
``kseed_sgd`` is FedKSeed's local optimizer over a seed pool.
"""

from fedjax_lab.transforms.correction import correction
from fedjax_lab.transforms.dp import clip
from fedjax_lab.transforms.dp import empty_cohort_noise
from fedjax_lab.transforms.dp import gaussian_noise
from fedjax_lab.transforms.dp import top_k
from fedjax_lab.transforms.proximal import proximal
from fedjax_lab.transforms.pruning import apply_mask
from fedjax_lab.transforms.pruning import magnitude_pruning
from fedjax_lab.transforms.sharpness_aware import sam
from fedjax_lab.transforms.sharpness_aware import sam_perturbation
from fedjax_lab.transforms.sharpness_aware import sam_sgd
from fedjax_lab.transforms.zeroth_order import kseed_sgd
from fedjax_lab.transforms.zeroth_order import spsa
from fedjax_lab.transforms.zeroth_order import spsa_gc
from fedjax_lab.transforms.zeroth_order import zo_gradient

__all__ = (
    "apply_mask",
    "clip",
    "correction",
    "empty_cohort_noise",
    "gaussian_noise",
    "kseed_sgd",
    "magnitude_pruning",
    "proximal",
    "sam",
    "sam_perturbation",
    "sam_sgd",
    "spsa",
    "spsa_gc",
    "top_k",
    "zo_gradient",
)
