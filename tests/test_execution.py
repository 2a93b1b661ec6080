"""Client execution plans: per-backend preference and the memory budget."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_lab import clients
from fedjax_lab import config as config_lib
from fedjax_lab import execution
from fedjax_lab import experiment

N, D = 40, 256


def client_fn(x):
    # A per-client [D, 4D] matmul operand: memory in flight grows with the chunk.
    a = jnp.sin(x[:, None] * jnp.arange(4 * D, dtype=jnp.float32))
    return jnp.sum(a @ a.T, axis=1) + x


def round_for(strategy, chunk_size):
    return lambda x: clients.map_clients(client_fn, x, strategy=strategy, chunk_size=chunk_size)


ARGS = (jnp.arange(N * D, dtype=jnp.float32).reshape(N, D) / (N * D),)


def test_preferred_chunk_per_backend():
    _, cpu = execution.compile_round(round_for, ARGS, N, 2**40, backend="cpu")
    assert (cpu.strategy, cpu.chunk_size) == ("chunked", execution.CPU_CHUNK_SIZE)
    _, gpu = execution.compile_round(round_for, ARGS, N, 2**40, backend="gpu")
    assert (gpu.strategy, gpu.chunk_size) == ("vmap", None)
    _, small = execution.compile_round(round_for, (ARGS[0][:4],), 4, 2**40, backend="cpu")
    assert small.strategy == "vmap"


def test_budget_shrinks_the_chunk_and_results_do_not_change():
    _, full = execution.compile_round(round_for, ARGS, N, 2**40, backend="gpu")
    compiled_two = jax.jit(round_for("chunked", 2)).lower(*ARGS).compile()
    budget = (execution.compiled_bytes(compiled_two) + full.round_bytes) // 2
    compiled, plan = execution.compile_round(round_for, ARGS, N, budget, backend="gpu")
    assert plan.strategy == "chunked" and 1 <= plan.chunk_size < N
    assert plan.round_bytes <= budget
    np.testing.assert_allclose(compiled(*ARGS), jax.jit(round_for("vmap", None))(*ARGS), rtol=1e-6)


def test_a_budget_below_one_client_is_a_clear_error():
    with pytest.raises(MemoryError, match=r"single client in flight needs [\d,]+ bytes"):
        execution.compile_round(round_for, ARGS, N, 1000, backend="cpu")


def test_auto_strategy_gives_the_same_run_as_vmap():
    base = dict(num_clients=12, rounds=2, local_steps=2, batch_size=8, progress=False)
    auto = experiment.build(config_lib.update(config_lib.get_config(), **base))
    vmap = experiment.build(config_lib.update(config_lib.get_config(), strategy="vmap", **base))
    assert (auto.execution.strategy, auto.execution.chunk_size) == ("chunked", 10)
    a, _ = auto.train_round(auto.initial_state, 0)
    b, _ = vmap.train_round(vmap.initial_state, 0)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, atol=1e-6)
    with pytest.raises(MemoryError, match="does not fit"):
        experiment.build(config_lib.update(config_lib.get_config(), memory_budget_gb=1e-6, **base))
    with pytest.raises(ValueError, match="Unknown client strategy 'fast'"):
        experiment.build(config_lib.update(config_lib.get_config(), strategy="fast", **base))
