"""How clients are executed: a strategy per backend, bounded by a memory budget.

The client strategies of :func:`fedjax_lab.clients.map_clients` compute the same numbers
and differ in speed and peak memory. :func:`compile_round` (``strategy="auto"`` in the
config) picks one:

1. the preferred chunk of clients for the backend and model (:func:`preferred_chunk`),
   measured in ``benchmarks/``: on XLA:CPU a loop over chunks of ``CPU_CHUNK_SIZE`` vmapped
   clients for dense models (batched per-client matmuls beyond a few clients run far below
   the matmul peak, and at N = 1000 vmap is memory-bound) and one client at a time for
   convolutional ones (per-client convolutions batched under vmap are slower than a loop);
   on GPU and TPU all clients at once (``vmap``), which keeps the accelerator busy;
2. the round is compiled for that chunk, and XLA's memory analysis of the compiled program
   (arguments, outputs and scratch space) is checked against the memory budget. When it
   does not fit, a compilation with chunks of 2 clients gives, by difference, the bytes each
   client in flight adds (its working copy of the parameters, optimizer state, batches and
   activations); the largest chunk estimated to fit is compiled and checked, halving until
   one fits. (XLA's buffer use is not exactly linear in the chunk, hence the check.) A
   budget that cannot hold a single client is an error that says how much one needs.

The compiled program is the one the run then executes, so the check costs no extra
compilation when the preferred chunk fits. With the client axis sharded, the chunk is per
device (each device loops over its own clients) and so is the memory analysis.

Cores on XLA:CPU: one CPU device runs a round's small per-client matmuls on one core. With
:func:`use_cpu_cores` (the ``fedjax-lab`` command calls it) JAX exposes one CPU device per
core, and the experiment runner splits the clients over them (``config.shard_clients``), so
every core trains its own clients: 1.8-1.9x the one-device round of an MLP on the 2-core
machine of ``benchmarks/README.md``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import jax

CPU_CHUNK_SIZE = 10
BUDGET_FRACTION = 0.8
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


class ExecutionPlan(NamedTuple):
    """The resolved client execution.

    Attributes:
      strategy: ``"vmap"``, ``"chunked"`` or ``"sequential"``.
      chunk_size: clients per chunk for ``"chunked"``, else None.
      round_bytes: memory of one compiled round (0 when not measured).
      budget_bytes: the memory budget it was checked against (0 when not checked).
      devices: the devices the clients are split over (1: not sharded); the strategy and
        the memory figures are per device.
    """

    strategy: str
    chunk_size: int | None
    round_bytes: int = 0
    budget_bytes: int = 0
    devices: int = 1


def default_memory_budget(device: Any = None) -> int:
    """``BUDGET_FRACTION`` of the device's memory limit, or of the host's RAM on CPU."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        total = int(stats["bytes_limit"])
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(BUDGET_FRACTION * total)


def use_cpu_cores(count: int | None = None) -> int:
    """Asks JAX for one CPU device per core (``jax_num_cpu_devices``), before it starts.

    A device count already chosen by the user (``XLA_FLAGS`` with
    ``--xla_force_host_platform_device_count``, the ``JAX_NUM_CPU_DEVICES`` variable, or an
    earlier ``jax.config.update("jax_num_cpu_devices", ...)``) is kept. This only affects the
    CPU backend: on a GPU or TPU machine the accelerator stays the default device.

    Args:
      count: devices to create; by default the cores this process may run on.

    Returns:
      The number of CPU devices JAX will create (``-1``: the count set in ``XLA_FLAGS``).

    Raises:
      RuntimeError: JAX has already started its backends (an array was created), so the
        device count can no longer change; call this first thing, before using JAX.
    """
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError(f"Expected a CPU device count >= 1, got {count!r}.")
    if _DEVICE_COUNT_FLAG in os.environ.get("XLA_FLAGS", ""):
        return -1
    current = jax.config.jax_num_cpu_devices
    if current != -1:
        return current
    if backends_started():
        raise RuntimeError(
            "JAX has already started its backends, so its CPU device count is fixed; call "
            "use_cpu_cores() before creating any array."
        )
    count = count or len(os.sched_getaffinity(0))
    jax.config.update("jax_num_cpu_devices", count)
    return count


def backends_started() -> bool:
    """Whether JAX has started its backends (after which device counts are fixed)."""
    return jax._src.xla_bridge.backends_are_initialized()


def preferred_chunk(backend: str, num_clients: int, params: Any) -> int:
    """Clients per chunk that :func:`compile_round` tries first.

    On CPU: 1 (one client at a time) when ``params`` hold a convolution kernel (a leaf of
    rank 4 or more), else ``CPU_CHUNK_SIZE``; on GPU and TPU: every client.
    """
    if backend != "cpu":
        return num_clients
    convolutional = any(jax.numpy.ndim(leaf) >= 4 for leaf in jax.tree.leaves(params))
    return min(1 if convolutional else CPU_CHUNK_SIZE, num_clients)


def compiled_bytes(compiled: Any) -> int:
    """Arguments, outputs and scratch space of a compiled program, in bytes."""
    stats = compiled.memory_analysis()
    if stats is None:
        raise RuntimeError("This backend gives no memory analysis of compiled programs.")
    return stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes


def _strategy(chunk: int, num_clients: int) -> tuple[str, int | None]:
    if chunk >= num_clients:
        return "vmap", None
    return ("sequential", None) if chunk == 1 else ("chunked", chunk)


def compile_round(
    round_for: Callable[[str, int | None], Callable],
    args: tuple,
    num_clients: int,
    budget_bytes: int,
    chunk: int | None = None,
    jit_kwargs: dict[str, Any] | None = None,
) -> tuple[Any, ExecutionPlan]:
    """Compiles the round with a preferred chunk, shrunk to fit the budget.

    Args:
      round_for: ``(strategy, chunk_size) -> round function`` (the same round).
      args: the round's arguments (arrays or ``jax.ShapeDtypeStruct``).
      num_clients: the clients each device maps over (N, or N / D when sharded).
      budget_bytes: the memory one round may use (per device).
      chunk: the chunk to try first (:func:`preferred_chunk`); by default
        ``CPU_CHUNK_SIZE`` on CPU and every client elsewhere.
      jit_kwargs: passed to ``jax.jit`` (input and output shardings, say).

    Returns:
      ``(compiled round, plan)``.

    Raises:
      MemoryError: when not even one client fits the budget.
    """
    if chunk is None:
        chunk = CPU_CHUNK_SIZE if jax.default_backend() == "cpu" else num_clients
    chunk = min(chunk, num_clients)

    def compile_chunk(chunk: int):
        strategy = _strategy(chunk, num_clients)
        compiled = jax.jit(round_for(*strategy), **(jit_kwargs or {})).lower(*args).compile()
        return compiled, ExecutionPlan(*strategy, compiled_bytes(compiled), budget_bytes)

    compiled, plan = compile_chunk(chunk)
    if plan.round_bytes <= budget_bytes:
        return compiled, plan
    if chunk > 2:  # estimate the largest chunk that fits from the slope between 2 and chunk
        two = compile_chunk(2)[1].round_bytes
        per_client = max((plan.round_bytes - two) // (chunk - 2), 1)
        chunk = min(chunk - 1, 2 + max(budget_bytes - two, 0) // per_client)
    else:
        chunk -= 1
    while chunk >= 1:
        compiled, plan = compile_chunk(chunk)
        if plan.round_bytes <= budget_bytes:
            return compiled, plan
        chunk = chunk // 2 if chunk > 2 else chunk - 1
    raise MemoryError(
        f"One client does not fit the memory budget: a round with a single client in flight "
        f"needs {plan.round_bytes:,} bytes (the population's state and data plus that client's "
        f"parameters, optimizer state, batches and activations), and the budget is "
        f"{budget_bytes:,} bytes. Use a smaller model, batch or client count, or raise "
        "config.memory_budget_gb."
    )
