"""Registry entry of Fed-LTP: its DP-SGD mechanism (its own ``dp`` section: switching from
the DP family resets it to these defaults) and its pruning (``ltp``)."""

from __future__ import annotations

from fedjax_lab.algorithms import lottery
from fedjax_lab.algorithms import private
from fedjax_lab.specs import base
from fedjax_lab.specs.fields import Field
from fedjax_lab.transforms import pruning

FIELDS = (
    Field("dp.clip_norm", 1.0, "C, the L2 bound of each example's gradient (DP-SGD)"),
    Field("dp.noise_multiplier", 1.0, "sigma: each DP-SGD step adds std sigma C / B"),
    Field("dp.delta", 1e-5, "delta of the reported epsilon (zCDP converted)"),
    Field(
        "dp.target_epsilon", None, "stop before a round could exceed it; None = no budget", float
    ),
    Field("ltp.target_sparsity", 0.8, "fraction of prunable weights finally pruned"),
    Field("ltp.prune_rate", 0.2, "fraction of the remaining weights cut per step"),
    Field("ltp.prune_every", 5, "rounds between pruning steps"),
    Field("ltp.validation_epsilon", 1.0, "eps_v of each Laplace-noised validation; 0 = none"),
    Field("ltp.validation_loss_bound", 5.0, "B: per-example losses clipped to [0, B]"),
    Field("ltp.validation_tolerance", 0.05, "accept a pruning step raising the loss at most this"),
)


def _pruning(c) -> lottery.Pruning:
    schedule = pruning.PruningSchedule(
        c.ltp.target_sparsity, c.ltp.prune_rate, c.ltp.prune_every
    ).check()
    if c.ltp.validation_epsilon < 0:
        raise ValueError(
            f"Expected ltp.validation_epsilon >= 0 (0 = no validation), got "
            f"{c.ltp.validation_epsilon!r}."
        )
    validation = None
    if c.ltp.validation_epsilon > 0:
        validation = pruning.LaplaceValidation(
            c.ltp.validation_epsilon, c.ltp.validation_loss_bound, c.ltp.validation_tolerance
        )
    return lottery.Pruning(schedule, validation)


def _build(c, loss_fn):
    settings = private.DPSettings(
        clip_norm=c.dp.clip_norm,
        noise_multiplier=c.dp.noise_multiplier,
        delta=c.dp.delta,
        target_epsilon=c.dp.target_epsilon,
    )
    return lottery.fed_ltp(
        loss_fn,
        base.local_sgd(c),
        local_steps=c.local.steps,
        settings=settings,
        prune=_pruning(c),
        **base.server_kwargs(c),
    )


FED_LTP = base.AlgorithmSpec(
    name="fed_ltp",
    summary="server; magnitude pruning broadcast as a mask; clients train sparse with DP-SGD; zCDP",
    build=_build,
    fields=FIELDS,
)
