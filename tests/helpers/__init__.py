"""Code the test modules share; no tests here, and no test module imports another.

configs: small experiment configs. problems: the small logistic-regression problem of the
algorithm tests. numpy_reference, reference_server_variants: independent NumPy references.
conformance: the conformance suite's algorithms and inputs. devices: scripts run with 8 host
devices. multihost_worker: a sharding worker process. toy_algorithm: an algorithm that
exercises the runner contract. fake_tfds: TFDS data that never downloads.
"""
