"""Privacy accounting over ``dp-accounting``: sampled Gaussian mechanisms (RDP, PLD), zCDP."""

from fedjax_lab.privacy.accounting import ACCOUNTANTS
from fedjax_lab.privacy.accounting import SAMPLINGS
from fedjax_lab.privacy.accounting import Mechanism
from fedjax_lab.privacy.accounting import calibrate_noise_multiplier
from fedjax_lab.privacy.accounting import dp_event
from fedjax_lab.privacy.accounting import epsilon
from fedjax_lab.privacy.accounting import zcdp_epsilon
from fedjax_lab.privacy.accounting import zcdp_gaussian

__all__ = (
    "ACCOUNTANTS",
    "SAMPLINGS",
    "Mechanism",
    "calibrate_noise_multiplier",
    "dp_event",
    "epsilon",
    "zcdp_epsilon",
    "zcdp_gaussian",
)
