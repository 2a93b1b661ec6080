"""CPU scale: the decentralized SAM family on scikit-learn's digits (the default run).

    fedjax-lab run --config experiments/digits.py --set algorithm=dfedavg

100 clients with Dirichlet(0.3) label skew over a ring, an MLP, 200 rounds of 10 local steps;
about two minutes per algorithm on a 2-core CPU.
"""

from fedjax_lab.specs import config as config_lib


def get_config():
    return config_lib.get_config()
