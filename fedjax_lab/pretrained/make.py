"""The script that made the shipped checkpoints: ``python -m fedjax_lab.pretrained.make``.

Each model is trained centrally with Adam on the training split of its source task
(``data.seed = 0``, :func:`fedjax_lab.data.load_centralized`), from
``jax.random.key(seed)``, and saved with :func:`fedjax_lab.pretrained.save` together with
its test accuracy on the source and on the target tasks. The runs are deterministic on one
backend; the shipped fingerprints were made on CPU.

``--names`` picks the recipes (the two shipped ones by default). The full-scale recipes
pre-train on prepared TFDS data (``--data-dir``), on an accelerator, for the full-scale
reproductions: ``cifar10_resnet18`` (ResNet-18-GN on CIFAR-10, prompted on
``cifar10_inverted`` by Fed-BBPT) and ``cifar100_vit`` (a ViT on CIFAR-100, split-tuned on
CIFAR-10 by FES). They are written beside the shipped ones, so that ``zo.model`` names them.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_lab import data
from fedjax_lab import models
from fedjax_lab import objectives
from fedjax_lab import pretrained


class Recipe(NamedTuple):
    """How a pre-trained model is made: ``model`` (a registered name) with ``kwargs``,
    trained on dataset ``source`` for ``steps`` Adam steps of ``batch_size``; its accuracy
    is recorded on the test splits of ``source`` and ``targets``."""

    model: str
    kwargs: dict
    source: str
    targets: tuple[str, ...]
    steps: int
    learning_rate: float
    batch_size: int = 64


RECIPES = {
    "digits_cnn": Recipe(
        "emnist_cnn",
        {"widths": (8, 16), "hidden": 64},
        "digits",
        ("digits_inverted", "digits_rotated"),
        1500,
        3e-3,
    ),
    # Its target, digits_high, has other labels: no target accuracy.
    "digits_vit": Recipe("vit", {}, "digits_low", (), 1500, 3e-3),
    "cifar10_resnet18": Recipe("resnet18", {}, "cifar10", ("cifar10_inverted",), 20000, 1e-3, 128),
    "cifar100_vit": Recipe(
        "vit",
        {"patch_size": 4, "dim": 192, "depth": 6, "heads": 3, "mlp_ratio": 4},
        "cifar100",
        (),
        30000,
        1e-3,
        128,
    ),
}
SHIPPED = ("digits_cnn", "digits_vit")
DATA_SEED = 0


def _accuracy(apply_fn, params, x, y, chunk: int = 1000) -> float:
    """The accuracy on ``(x, y)``, ``chunk`` examples at a time (a CIFAR test split through
    ResNet-18 in one batch would hold every activation at once)."""
    predict = jax.jit(lambda p, xs: jnp.argmax(apply_fn(p, xs), -1))
    hits = sum(
        int(np.sum(np.asarray(predict(params, x[i : i + chunk])) == y[i : i + chunk]))
        for i in range(0, len(y), chunk)
    )
    return hits / len(y)


def train(name: str, seed: int = 0, *, data_dir: str | None = None, steps: int | None = None):
    """Trains recipe ``name`` (for ``steps`` instead of its own, if given); returns
    ``(model name, kwargs, classes, params, details, input shape)``."""
    recipe = RECIPES[name]
    steps = recipe.steps if steps is None else steps
    x, y, x_test, y_test = data.load_centralized(recipe.source, DATA_SEED, data_dir)
    num_classes = data.task_shape(recipe.source)[0]
    model = models.make_model(recipe.model, num_classes, **recipe.kwargs)
    apply_fn = lambda p, inputs: model.apply({"params": p}, inputs)
    loss_fn = objectives.cross_entropy_loss(apply_fn)
    key = jax.random.key(seed)
    params = models.init_params(model, x.shape[1:], key)
    optimizer = optax.adam(recipe.learning_rate)

    @jax.jit
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    state = optimizer.init(params)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rows = rng.choice(len(y), recipe.batch_size, replace=False)
        params, state, loss = step(params, state, {"x": x[rows], "y": y[rows]})
    details = {
        "source_task": recipe.source,
        "trained": f"Adam({recipe.learning_rate}), {steps} steps of batch {recipe.batch_size}, "
        f"seed {seed}, training split of data.seed={DATA_SEED}",
        "source_test_accuracy": _accuracy(apply_fn, params, x_test, y_test),
    }
    for target in recipe.targets:
        xt, yt = data.load_centralized(target, DATA_SEED, data_dir)[2:]  # a domain shift
        details[f"{target}_test_accuracy"] = _accuracy(apply_fn, params, xt, yt)
    return recipe.model, recipe.kwargs, num_classes, params, details, x.shape[1:]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(pretrained.CHECKPOINTS))
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--names", nargs="+", choices=sorted(RECIPES), default=list(SHIPPED))
    parser.add_argument("--data-dir", default=None, help="the TFDS data directory")
    parser.add_argument("--steps", type=int, default=None, help="instead of the recipe's")
    args = parser.parse_args(argv)
    for name in args.names:
        path = pathlib.Path(args.out) / name
        if path.exists() and args.overwrite:
            shutil.rmtree(path)
        model_name, kwargs, num_classes, params, details, shape = train(
            name, data_dir=args.data_dir, steps=args.steps
        )
        info = pretrained.save(
            path,
            model_name,
            params,
            num_classes=num_classes,
            input_shape=shape,
            model_kwargs=kwargs,
            made_by="python -m fedjax_lab.pretrained.make"
            + f" --names {name}" * (name not in SHIPPED),
            **details,
        )
        print(name, {k: v for k, v in info.items() if "accuracy" in k}, info["fingerprint"])


if __name__ == "__main__":
    main()
