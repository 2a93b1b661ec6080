"""Sharded rounds equal one-device rounds: 8 local devices, and 2 processes x 2 devices.

The device count of a process is fixed when JAX starts, and this pytest process already
runs JAX on one device, so the sharded runs happen in fresh interpreters
(``tests/helpers/multihost_worker.py``): one process with 8 host-platform devices, and two
processes joined through ``jax.distributed.initialize`` on a loopback coordinator with gloo
collectives and 2 devices each (4 global devices). All three start together and each
writes a JSON report; the tests below read the reports.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import sharding
from tests.helpers.devices import REPO
from tests.helpers.devices import TIMEOUT_S
from tests.helpers.devices import run_on_8_devices
from tests.helpers.devices import worker_env

WORKER = REPO / "tests" / "helpers" / "multihost_worker.py"
PEER_GRACE_S = 30  # how long one multi-host process may outlive its peer
TOLERANCE = 1e-6
GOSSIP_CASES = ("dfedsam_dense", "dfedsam_sparse")
SINGLE_CASES = (
    "dfedsam_dense@8+4,dfedsam_sparse@8+4,fedavg_m8,dfedsam_dense_in_jit,dfedpgp_sparse@8"
)
MULTIHOST_CASES = "dfedsam_dense,dfedsam_sparse,fedavg_m8"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_workers(
    commands: dict[str, list[str]], log_dir: pathlib.Path, program: tuple[str, ...] = (str(WORKER),)
) -> None:
    """Runs every worker at once and fails if any fails, hangs or outlives the deadline.

    Workers named ``host*`` form one multi-process run: once one of them has exited, the
    others must follow within ``PEER_GRACE_S`` (a lost peer would otherwise leave them
    waiting in a collective until JAX's own minutes-long timeouts). Stragglers are killed.
    """
    procs, exited = {}, {}
    with contextlib.ExitStack() as stack:
        try:
            for name, args in commands.items():
                log = stack.enter_context(open(log_dir / f"{name}.log", "w"))
                procs[name] = subprocess.Popen(
                    [sys.executable, *program, *args],
                    cwd=REPO,
                    env=worker_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + TIMEOUT_S
            while len(exited) < len(procs) and time.monotonic() < deadline:
                for name, p in procs.items():
                    if name not in exited and p.poll() is not None:
                        exited[name] = time.monotonic()
                if any(p.returncode not in (None, 0) for p in procs.values()):
                    break
                hosts = [n for n in exited if n.startswith("host")]
                if hosts and time.monotonic() - min(exited[n] for n in hosts) > PEER_GRACE_S:
                    break
                time.sleep(0.2)
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
    problems = [
        f"--- {name} exited with {p.returncode}:\n" + (log_dir / f"{name}.log").read_text()[-3000:]
        for name, p in procs.items()
        if p.returncode != 0
    ]
    if problems:
        pytest.fail(
            "Sharding workers failed, hung or ran past the deadline:\n" + "\n".join(problems)
        )


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The JSON reports of the 8-device process and of both multi-host processes."""
    out = tmp_path_factory.mktemp("sharding")
    coordinator = f"127.0.0.1:{_free_port()}"
    commands = {"single8": ["--devices", "8", "--cases", SINGLE_CASES]}
    for i in range(2):
        commands[f"host{i}"] = [
            *("--devices", "2", "--cases", MULTIHOST_CASES, "--no-reference"),
            *("--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i)),
        ]
    for name, args in commands.items():
        args += ["--out", str(out / f"{name}.json")]
    _run_workers(commands, out)
    loaded = {}
    for name in commands:
        report = json.loads((out / f"{name}.json").read_text())
        with np.load(out / f"{name}.json.npz") as arrays:
            report["arrays"] = dict(arrays)
        loaded[name] = report
    return loaded


def _params(report, prefix):
    """The parameter leaves a worker saved under ``prefix`` (``case/mesh4``, ...), by path."""
    arrays = report["arrays"]
    found = {
        k.removeprefix(prefix + "/"): v for k, v in arrays.items() if k.startswith(prefix + "/")
    }
    assert found, f"no arrays under {prefix!r}; saved: {sorted(arrays)[:5]}..."
    return found


def test_sharded_rounds_equal_one_device_rounds(reports):
    report = reports["single8"]
    assert (report["global_devices"], report["process_count"]) == (8, 1)
    bitwise = {}
    for name, case in report["cases"].items():
        result = case["mesh8"]
        assert result["max_abs_diff"] <= TOLERANCE, (name, result)
        bitwise[name] = result["bitwise_equal"]
        layout = result["layout"]
        assert layout["num_devices"] == 8, (name, layout)
        if name.startswith(("dfedsam", "dfedpgp")):
            # params [16, ...] split over 8 devices: 2 clients on each.
            assert layout["spec"] == "P('clients',)", (name, layout)
            assert (layout["num_local_shards"], layout["local_shard_rows"]) == (8, [2])
        else:
            assert layout["spec"] == "P()", (name, layout)  # the global model, replicated
    print("sharded over 8 devices == one device, bitwise:", bitwise)


def test_decentralized_rounds_do_not_depend_on_the_mesh_size(reports):
    cases = reports["single8"]["cases"]
    for name in GOSSIP_CASES:
        assert cases[name]["mesh4"]["layout"]["local_shard_rows"] == [4]
        assert (
            cases[name]["mesh4"]["sharded_fingerprint"]
            == (cases[name]["mesh8"]["sharded_fingerprint"])
        ), name
    # Batches sampled inside the jitted round from sharded client data: same result.
    assert (
        cases["dfedsam_dense_in_jit"]["mesh8"]["sharded_fingerprint"]
        == (cases["dfedsam_dense"]["mesh8"]["sharded_fingerprint"])
    )


def test_two_processes_match_one_process(reports):
    hosts = [reports["host0"], reports["host1"]]
    assert [h["process_index"] for h in hosts] == [0, 1]
    single = reports["single8"]
    for host in hosts:
        assert (host["process_count"], host["global_devices"], host["local_devices"]) == (2, 4, 2)
        for name, case in host["cases"].items():
            result = case["mesh4"]
            assert result["layout"]["num_devices"] == 4, (name, result)
            assert result["layout"]["num_local_shards"] == 2, (name, result)
            # Both processes gathered the same global parameters...
            assert (
                result["sharded_fingerprint"]
                == (hosts[0]["cases"][name]["mesh4"]["sharded_fingerprint"])
            ), name
            # ... equal to the one-device run's.
            reference = _params(single, f"{name}/reference")
            sharded = _params(host, f"{name}/mesh4")
            assert sharded.keys() == reference.keys()
            for path, value in sharded.items():
                np.testing.assert_allclose(value, reference[path], rtol=0, atol=TOLERANCE)
    for name in GOSSIP_CASES:
        # Gossip has no cross-device sums, so 2 processes x 2 devices equal 1 x 4 bitwise.
        # (FedAvg's mean is an all-reduce whose summation order gloo chooses: close only.)
        assert (
            hosts[0]["cases"][name]["mesh4"]["sharded_fingerprint"]
            == (single["cases"][name]["mesh4"]["sharded_fingerprint"])
        ), name


def test_shard_errors_name_the_leaf_and_suggest_a_client_count(reports):
    errors = reports["single8"]["errors"]
    assert "(15, 3)" in errors["indivisible"] and "8 devices" in errors["indivisible"]
    assert "e.g. 16" in errors["indivisible"] and "['w']" in errors["indivisible"]
    assert "e.g. 16" in errors["indivisible_state"]
    assert "scalar" in errors["scalar"] and "replicate" in errors["scalar"]
    assert "15 clients" in errors["round_indivisible"] and "e.g. 16" in errors["round_indivisible"]
    assert "(15, 3)" in reports["host0"]["errors"]["indivisible"]  # 4 global devices
    assert "4 devices" in reports["host0"]["errors"]["indivisible"]


# One device (this process): placement, layouts and gathering without subprocesses.


def test_client_mesh_and_layouts_on_one_device():
    mesh = sharding.client_mesh()
    assert mesh.axis_names == ("clients",) and mesh.size == jax.device_count()
    tree = {"params": np.ones((4, 3), np.float32), "round": np.int32(2)}
    layout = sharding.client_shardings(tree, mesh, num_clients=4)
    assert layout["params"].spec == jax.sharding.PartitionSpec("clients")
    assert layout["round"].spec == jax.sharding.PartitionSpec()
    placed = sharding.shard_clients(tree, mesh, num_clients=4)
    assert placed["params"].sharding.is_equivalent_to(layout["params"], 2)
    assert sharding.shard_clients(placed, mesh, num_clients=4)["params"] is placed["params"]
    host = sharding.to_host(placed)
    np.testing.assert_array_equal(host["params"], tree["params"])
    assert host["round"] == 2


def test_replicate_and_gather_keys():
    mesh = sharding.client_mesh()
    key = jax.random.key(3)
    placed = sharding.replicate({"key": key, "w": jnp.eye(3)}, mesh)
    assert jax.dtypes.issubdtype(placed["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        sharding.to_host(placed["key"]), np.asarray(jax.random.key_data(key))
    )


def test_bad_mesh_arguments():
    with pytest.raises(ValueError, match="at least one device"):
        sharding.client_mesh(devices=[])
    mesh_2d = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("a", "b"))
    with pytest.raises(ValueError, match="1-D"):
        sharding.shard_clients(np.ones((2,)), mesh_2d)
    other_name = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match="'clients'"):
        sharding.shard_clients(np.ones((2,)), other_name)


EXPERIMENT_SCRIPT = """
import json, sys
import jax, numpy as np
from fedjax_lab.specs import config as config_lib
from fedjax_lab.runner import experiment
assert jax.device_count() == 8
out = {}
for algorithm in ("dfedsam", "fedavg", "fedkseed"):
    base = dict(algorithm=algorithm, num_clients=16, rounds=3, eval_every=3, progress=False,
                local={"steps": 2, "batch_size": 8}, data={"test_examples_per_client": 20})
    if algorithm != "dfedsam":  # a server's cohort (a gossip round has none)
        base["server"] = {"clients_per_round": 8}
    params = {}
    for shard in ("no", "yes"):
        exp = experiment.build(config_lib.update(config_lib.get_config(),
                                                 execution={"shard_clients": shard}, **base))
        state = exp.initial_state
        for t in range(3):
            state, metrics = exp.train_round(state, t)
        params[shard] = jax.tree.leaves(state.params)
        if shard == "yes":
            out[algorithm + "_devices"] = len(params[shard][0].sharding.device_set)
            out[algorithm + "_accuracy"] = exp.evaluate(state)["test_accuracy"]
    out[algorithm + "_max_diff"] = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(params["no"], params["yes"]))
config = config_lib.update(config_lib.get_config(), execution={"shard_clients": "yes"},
                           num_clients=16, local={"steps": 2, "batch_size": 8}, rounds=4,
                           eval_every=2, checkpoint_every=2,
                           data={"test_examples_per_client": 20}, progress=False)
first = experiment.run(config, sys.argv[1])
again = experiment.run(config, sys.argv[1], resume=True)
out["resume_same"] = first["params_sha256"] == again["params_sha256"]
print(json.dumps(out))
"""


def test_sharded_experiment_matches_the_unsharded_one(tmp_path):
    out = run_on_8_devices(EXPERIMENT_SCRIPT, str(tmp_path / "run"))
    # dfedsam: the population is split over the 8 devices; fedavg's global model is replicated.
    # fedkseed: local steps with no gradient at all, in each device's share of the clients.
    assert out["dfedsam_devices"] == 8 and out["fedavg_devices"] == 8
    assert out["dfedsam_max_diff"] < 1e-5 and out["fedavg_max_diff"] < 1e-5
    assert out["fedkseed_devices"] == 8 and out["fedkseed_max_diff"] < 1e-4
    assert 0.0 <= out["dfedsam_accuracy"] <= 1.0
    assert out["resume_same"]


MAP_CLIENTS_SCRIPT = """
import json
import jax, jax.numpy as jnp, numpy as np
from fedjax_lab import clients, sharding
assert jax.device_count() == 8
rng = np.random.default_rng(0)
w = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
loss = lambda w, x: jnp.sum(jnp.tanh(x @ w) ** 2)
mesh = sharding.client_mesh()
out = {}
for n in (16, 12):  # 16 clients split 2 per device; 12 are not divisible by 8 devices
    x = jnp.asarray(rng.normal(size=(n, 4, 3)), jnp.float32)
    for strategy, chunk in (("vmap", None), ("chunked", 2), ("sequential", None)):
        mapped = lambda f, *a: clients.map_clients(f, *a, strategy=strategy, chunk_size=chunk)
        # Each client's gradient at the global model it closes over.
        inner = lambda w, x: mapped(lambda xi: jax.grad(loss)(w, xi), x)
        # A gradient through map_clients from outside: summed over every client (vmap only;
        # JAX rejects it for a lax.map loop over a closure inside shard_map).
        outer = jax.grad(lambda w, x: jnp.sum(mapped(lambda xi: loss(w, xi), x)))
        fns = (inner, outer) if strategy == "vmap" else (inner,)
        want = [jax.jit(f)(w, x) for f in fns]
        with jax.set_mesh(mesh):
            place = sharding.shard_clients if n % 8 == 0 else sharding.replicate
            args = sharding.replicate(w, mesh), place(x, mesh)
            got = [jax.jit(f)(*args) for f in fns]
            hlo = jax.jit(inner).lower(*args).compile().as_text()
        name = f"{strategy}_{n}"
        diffs = [float(np.max(np.abs(np.asarray(a) - sharding.to_host(b)))) for a, b in zip(want, got)]
        out[name] = {
            "inner_diff": diffs[0],
            "outer_diff": diffs[-1],
            "all_gathers": hlo.count("all-gather("),
            "out_devices": len(got[0].sharding.device_set),
        }
# Ring gossip in the circulant form: shifts become collective permutes, no all-gather.
from fedjax_lab import gossip, topology
x = jnp.asarray(rng.normal(size=(16, 5)), jnp.float32)
ring = topology.ring(16).matrix(0)
with jax.set_mesh(mesh):
    args = sharding.replicate(gossip.to_circulant(ring), mesh), sharding.shard_clients(x, mesh)
    mixed = jax.jit(gossip.mix)(*args)
    hlo = jax.jit(gossip.mix).lower(*args).compile().as_text()
out["circulant_gossip"] = {
    "diff": float(np.max(np.abs(sharding.to_host(mixed) - ring @ np.asarray(x)))),
    "all_gathers": hlo.count("all-gather("),
    "out_devices": len(mixed.sharding.device_set),
}
print(json.dumps(out))
"""


def test_map_clients_and_circulant_gossip_stay_local_to_each_device():
    out = run_on_8_devices(MAP_CLIENTS_SCRIPT)
    circulant = out.pop("circulant_gossip")
    assert circulant["diff"] < 1e-5 and circulant["all_gathers"] == 0, circulant
    assert circulant["out_devices"] == 8, circulant
    assert len(out) == 6
    for name, result in out.items():
        assert result["inner_diff"] < 1e-5 and result["outer_diff"] < 1e-5, (name, result)
        if name.endswith("_16"):
            # shard_map: no device gathers the other devices' clients, for any strategy.
            assert result["all_gathers"] == 0, (name, result)
            assert result["out_devices"] == 8, (name, result)


def test_two_processes_run_one_experiment_from_the_command_line(tmp_path):
    """``fedjax-lab run`` over two processes (2 CPU devices each) records the same run as one
    process with 4 devices: same final parameters, same metrics, one set of records."""
    small = [
        *("--clients", "8", "--rounds", "4"),
        *("--set", "local.steps=2", "--set", "local.batch_size=8"),
        *("--set", "eval_every=2", "--set", "checkpoint_every=2"),
        *("--set", "data.test_examples_per_client=20", "--set", "progress=False"),
    ]
    coordinator = f"127.0.0.1:{_free_port()}"
    commands = {"single": ["run", *small, "--cpu-devices", "4", "--workdir", str(tmp_path / "one")]}
    for i in range(2):
        commands[f"host{i}"] = [
            *("run", *small, "--cpu-devices", "2", "--workdir", str(tmp_path / "two")),
            *("--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i)),
        ]
    _run_workers(commands, tmp_path, program=("-m", "fedjax_lab.runner.cli"))
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert one["devices"] == two["devices"] == 4
    assert one["params_sha256"] == two["params_sha256"]
    assert one["test_accuracy"] == pytest.approx(two["test_accuracy"], abs=1e-6)
    lines = [(tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("one", "two")]
    assert len(lines[0]) == len(lines[1]) == 2  # rounds 2 and 4, written once
    for a, b in zip(*lines):
        a, b = json.loads(a), json.loads(b)
        assert a["round"] == b["round"] and a["bytes_communicated"] == b["bytes_communicated"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["2", "4"]
