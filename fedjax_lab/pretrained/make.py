"""The script that made the shipped checkpoints: ``python -m fedjax_lab.pretrained.make``.

Each model is trained centrally with Adam on the training split of its source task
(``data.seed = 0``, :func:`fedjax_lab.data.load_digits`), from ``jax.random.key(seed)``,
and saved with :func:`fedjax_lab.pretrained.save` together with its test accuracy on the
source and on the target tasks. The runs are deterministic on one backend; the shipped
fingerprints were made on CPU.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_lab import models
from fedjax_lab import objectives
from fedjax_lab import pretrained
from fedjax_lab.data import sources

# name: (model, model kwargs, source variant, target variants, steps, learning rate)
RECIPES = {
    "digits_cnn": (
        "emnist_cnn",
        {"widths": (8, 16), "hidden": 64},
        "original",
        ("inverted", "rotated"),
        1500,
        3e-3,
    ),
    "digits_vit": ("vit", {}, "low", (), 1500, 3e-3),  # its target, digits_high, has other labels
}
BATCH_SIZE = 64
DATA_SEED = 0


def _accuracy(apply_fn, params, x, y) -> float:
    return float(np.mean(np.asarray(jnp.argmax(apply_fn(params, x), -1)) == y))


def train(name: str, seed: int = 0) -> tuple[str, dict, int, object, dict]:
    """Trains recipe ``name``; returns ``(model name, kwargs, classes, params, details)``."""
    model_name, kwargs, source, targets, steps, learning_rate = RECIPES[name]
    x, y, x_test, y_test = sources.load_digits(DATA_SEED, variant=source)
    num_classes = int(y.max()) + 1
    model = models.make_model(model_name, num_classes, **kwargs)
    apply_fn = lambda p, inputs: model.apply({"params": p}, inputs)
    loss_fn = objectives.cross_entropy_loss(apply_fn)
    key = jax.random.key(seed)
    params = models.init_params(model, x.shape[1:], key)
    optimizer = optax.adam(learning_rate)

    @jax.jit
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    state = optimizer.init(params)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rows = rng.choice(len(y), BATCH_SIZE, replace=False)
        params, state, loss = step(params, state, {"x": x[rows], "y": y[rows]})
    details = {
        "source_task": f"digits_{source}" if source != "original" else "digits",
        "trained": f"Adam({learning_rate}), {steps} steps of batch {BATCH_SIZE}, seed {seed}, "
        f"training split of data.seed={DATA_SEED}",
        "source_test_accuracy": _accuracy(apply_fn, params, x_test, y_test),
    }
    for target in targets:
        xt, yt = sources.load_digits(DATA_SEED, variant=target)[2:]  # a domain shift
        details[f"digits_{target}_test_accuracy"] = _accuracy(apply_fn, params, xt, yt)
    return model_name, kwargs, num_classes, params, details


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(pretrained.CHECKPOINTS))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    for name in RECIPES:
        path = pathlib.Path(args.out) / name
        if path.exists() and args.overwrite:
            shutil.rmtree(path)
        model_name, kwargs, num_classes, params, details = train(name)
        info = pretrained.save(
            path,
            model_name,
            params,
            num_classes=num_classes,
            input_shape=(8, 8, 1),
            model_kwargs=kwargs,
            made_by="python -m fedjax_lab.pretrained.make",
            **details,
        )
        print(name, {k: v for k, v in info.items() if "accuracy" in k}, info["fingerprint"])


if __name__ == "__main__":
    main()
