"""Scripts run in fresh interpreters with their own host-platform devices.

The device count of a process is fixed when JAX starts, and a pytest process already runs
JAX on one device, so a test that needs 8 devices runs its script in a new interpreter.
"""

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
# A guard against a hung collective, not a deadline: the slowest script takes about 80 s on a
# quiet 2-core machine, so a machine three or more times slower still finishes well inside it.
TIMEOUT_S = 1800


def worker_env() -> dict[str, str]:
    """This process's environment for a worker: CPU only, no XLA flags, the repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_on_8_devices(script: str, *args: str) -> dict:
    """Runs ``script`` in a fresh interpreter with 8 host devices; its last line as JSON."""
    env = worker_env()
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
