"""How clients are executed: a strategy per backend, bounded by a memory budget.

The client strategies of :func:`fedjax_lab.clients.map_clients` compute the same numbers
and differ in speed and peak memory. :func:`compile_round` (``strategy="auto"`` in the
config) picks one:

1. the backend's preferred chunk of clients, measured in ``benchmarks/``: on XLA:CPU a loop
   over chunks of ``CPU_CHUNK_SIZE`` vmapped clients (batched per-client matmuls beyond a few
   clients run far below the matmul peak, and at N = 1000 vmap is memory-bound); on GPU and
   TPU all clients at once (``vmap``), which keeps the accelerator busy;
2. the round is compiled for that chunk, and XLA's memory analysis of the compiled program
   (arguments, outputs and scratch space) is checked against the memory budget. When it
   does not fit, a compilation with chunks of 2 clients gives, by difference, the bytes each
   client in flight adds (its working copy of the parameters, optimizer state, batches and
   activations); the largest chunk estimated to fit is compiled and checked, halving until
   one fits. (XLA's buffer use is not exactly linear in the chunk, hence the check.) A
   budget that cannot hold a single client is an error that says how much one needs.

The compiled program is the one the run then executes, so the check costs no extra
compilation when the preferred chunk fits.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import jax

CPU_CHUNK_SIZE = 10
BUDGET_FRACTION = 0.8


class ExecutionPlan(NamedTuple):
    """The resolved client execution.

    Attributes:
      strategy: ``"vmap"``, ``"chunked"`` or ``"sequential"``.
      chunk_size: clients per chunk for ``"chunked"``, else None.
      round_bytes: memory of one compiled round (0 when not measured).
      budget_bytes: the memory budget it was checked against (0 when not checked).
    """

    strategy: str
    chunk_size: int | None
    round_bytes: int = 0
    budget_bytes: int = 0


def default_memory_budget(device: Any = None) -> int:
    """``BUDGET_FRACTION`` of the device's memory limit, or of the host's RAM on CPU."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        total = int(stats["bytes_limit"])
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(BUDGET_FRACTION * total)


def compiled_bytes(compiled: Any) -> int:
    """Arguments, outputs and scratch space of a compiled program, in bytes."""
    stats = compiled.memory_analysis()
    if stats is None:
        raise RuntimeError("This backend gives no memory analysis of compiled programs.")
    return stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes


def _strategy(chunk: int, num_clients: int) -> tuple[str, int | None]:
    return ("vmap", None) if chunk >= num_clients else ("chunked", chunk)


def compile_round(
    round_for: Callable[[str, int | None], Callable],
    args: tuple,
    num_clients: int,
    budget_bytes: int,
    backend: str | None = None,
    jit_kwargs: dict[str, Any] | None = None,
) -> tuple[Any, ExecutionPlan]:
    """Compiles the round with the backend's preferred chunk, shrunk to fit the budget.

    Args:
      round_for: ``(strategy, chunk_size) -> round function`` (the same round).
      args: the round's arguments (arrays or ``jax.ShapeDtypeStruct``).
      num_clients: N.
      budget_bytes: the memory one round may use.
      backend: defaults to ``jax.default_backend()``.
      jit_kwargs: passed to ``jax.jit`` (input and output shardings, say).

    Returns:
      ``(compiled round, plan)``.

    Raises:
      MemoryError: when not even one client fits the budget.
    """
    backend = backend or jax.default_backend()
    chunk = min(CPU_CHUNK_SIZE if backend == "cpu" else num_clients, num_clients)

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
