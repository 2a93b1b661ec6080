"""Test-session settings shared by every test process.

* The suite runs in several processes (``pytest -n 2``); on a GPU each would otherwise
  reserve most of the device's memory when JAX starts, so memory is allocated as needed.
* XLA's persistent compilation cache is on, in a directory of this session (inherited by
  the test workers and by the command-line runs the tests start): many tests build the
  same round again (each strategy, each resumed process, each command-line run), and a
  program compiled once is then read back instead of compiled again.
* The longest tests run first (``pytest_collection_modifyitems``).
* The library's own cache (generated MNIST-1D sets, :mod:`fedjax_lab.caches`) lives there
  too, so no test writes to the user's cache. The directory is new for every session and
  removed after it: nothing carries over between runs.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

if "FEDJAX_LAB_TEST_SESSION_DIR" not in os.environ:  # the first process of the session
    _session = tempfile.mkdtemp(prefix="fedjax_lab-tests-")
    os.environ["FEDJAX_LAB_TEST_SESSION_DIR"] = _session
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(_session, "xla")
    os.environ["FEDJAX_LAB_CACHE_DIR"] = os.path.join(_session, "cache")
    atexit.register(shutil.rmtree, _session, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

# The longest tests first, so that neither test process is left with one at the end.
_FIRST = (
    "tests/test_notebooks.py",
    "tests/runner/test_full_scale.py",
    "tests/test_sharding.py",
    "tests/algorithms/test_conformance.py::test_sharded_rounds_on_8_devices",
)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(_FIRST))  # stable: else in order
