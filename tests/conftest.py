"""Test-session settings shared by every test process.

The suite runs in several processes (``pytest -n 2``); on a GPU each would otherwise
reserve most of the device's memory when JAX starts, so memory is allocated as needed.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
