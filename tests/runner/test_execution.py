"""Client execution plans: per-backend preference and the memory budget."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import clients
from fedjax_lab.specs import config as config_lib
from fedjax_lab.runner import execution
from fedjax_lab.runner import experiment

N, D = 40, 256


def client_fn(x):
    # A per-client [D, 4D] matmul operand: memory in flight grows with the chunk.
    a = jnp.sin(x[:, None] * jnp.arange(4 * D, dtype=jnp.float32))
    return jnp.sum(a @ a.T, axis=1) + x


def round_for(strategy, chunk_size):
    return lambda x: clients.map_clients(client_fn, x, strategy=strategy, chunk_size=chunk_size)


ARGS = (jnp.arange(N * D, dtype=jnp.float32).reshape(N, D) / (N * D),)


def test_preferred_chunk_per_backend_and_model():
    dense = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    conv = {"conv": {"kernel": jnp.ones((5, 5, 1, 8))}, "head": dense}
    assert execution.preferred_chunk("cpu", N, dense) == execution.CPU_CHUNK_SIZE
    assert execution.preferred_chunk("cpu", N, conv) == 1
    assert execution.preferred_chunk("cpu", 4, dense) == 4
    assert execution.preferred_chunk("gpu", N, conv) == N
    for chunk, want in ((execution.CPU_CHUNK_SIZE, ("chunked", 10)), (1, ("sequential", None))):
        _, plan = execution.compile_round(round_for, ARGS, N, 2**40, chunk=chunk)
        assert (plan.strategy, plan.chunk_size) == want
    _, everyone = execution.compile_round(round_for, ARGS, N, 2**40, chunk=N)
    assert (everyone.strategy, everyone.chunk_size) == ("vmap", None)
    _, small = execution.compile_round(round_for, (ARGS[0][:4],), 4, 2**40, chunk=10)
    assert small.strategy == "vmap"


def test_use_cpu_cores_refuses_once_jax_has_started(monkeypatch):
    jnp.zeros(1).block_until_ready()  # backends are up in this process
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    with pytest.raises(RuntimeError, match="before creating any array"):
        execution.use_cpu_cores()
    with pytest.raises(ValueError, match="device count >= 1, got 0"):
        execution.use_cpu_cores(0)
    # A device count given through XLA_FLAGS is the user's choice and is kept.
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=3")
    assert execution.use_cpu_cores() == -1


def test_budget_shrinks_the_chunk_and_results_do_not_change():
    _, full = execution.compile_round(round_for, ARGS, N, 2**40, chunk=N)
    compiled_two = jax.jit(round_for("chunked", 2)).lower(*ARGS).compile()
    budget = (execution.compiled_bytes(compiled_two) + full.round_bytes) // 2
    compiled, plan = execution.compile_round(round_for, ARGS, N, budget, chunk=N)
    assert plan.strategy == "chunked" and 1 <= plan.chunk_size < N
    assert plan.round_bytes <= budget
    np.testing.assert_allclose(compiled(*ARGS), jax.jit(round_for("vmap", None))(*ARGS), rtol=1e-6)


def test_a_budget_below_one_client_is_a_clear_error():
    with pytest.raises(MemoryError, match=r"single client in flight needs [\d,]+ bytes"):
        execution.compile_round(round_for, ARGS, N, 1000, chunk=10)


def test_auto_strategy_gives_the_same_run_as_vmap():
    base = dict(num_clients=12, rounds=2, local={"steps": 2, "batch_size": 8}, progress=False)
    config = lambda **execution: config_lib.update(
        config_lib.get_config(), execution=execution, **base
    )
    auto = experiment.build(config())
    vmap = experiment.build(config(strategy="vmap"))
    assert (auto.execution.strategy, auto.execution.chunk_size) == ("chunked", 10)
    a, _ = auto.train_round(auto.initial_state, 0)
    b, _ = vmap.train_round(vmap.initial_state, 0)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, atol=1e-6)
    with pytest.raises(MemoryError, match="does not fit"):
        experiment.build(config(memory_budget_gb=1e-6))
    with pytest.raises(ValueError, match="Unknown client strategy 'fast'"):
        experiment.build(config(strategy="fast"))
