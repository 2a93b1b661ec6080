"""Pre-trained models that ship with the library, and checkpoints of your own.

Black-box and split tuning start from a model trained on a source task. Two small ones
ship in the package, so every zeroth-order algorithm runs offline:

* ``digits_cnn``: the EMNIST CNN (:class:`fedjax_lab.models.EmnistCNN`) trained on the
  10 digits; a target task is a domain shift of them (``digits_inverted``,
  ``digits_rotated``), for prompting (Fed-BBPT);
* ``digits_vit``: the small ViT (:class:`fedjax_lab.models.ViT`) trained on the digits 0
  to 4 (``digits_low``); the target task is the digits 5 to 9 (``digits_high``), another
  label set, for split tuning (FES-PIT / FES-PTZO).

Both were trained on the training split of ``data.seed = 0``, so with that seed no test
image of a target task was seen in pre-training, in any domain.
``python -m fedjax_lab.pretrained.make`` is the script that made them; each checkpoint's
``info.json`` records how, the source accuracy and the sha256 fingerprint of its
parameters (:func:`fedjax_lab.runner.fingerprints.params_fingerprint`), which :func:`load` checks.

A checkpoint is a directory: ``params/`` (an orbax checkpoint of the flax ``params``
collection) and ``info.json`` (the registered model name and its keyword arguments, the
number of classes, the input shape). :func:`save` writes one and :func:`load` reads one by
path as well as by shipped name, so a larger model of your own is tuned the same way
(``zo.model=/path/to/checkpoint``). :func:`restore` reads a bare orbax checkpoint of any
flax module, given the module.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, NamedTuple

import flax.linen as nn
import jax

from fedjax_lab import models
from fedjax_lab.runner import fingerprints

__all__ = ["Pretrained", "available", "load", "restore", "save"]

CHECKPOINTS = pathlib.Path(__file__).parent / "checkpoints"
INFO = "info.json"
PARAMS = "params"


class Pretrained(NamedTuple):
    """A pre-trained model.

    Attributes:
      name: its shipped name, or the path it was loaded from.
      model: the flax module.
      params: its ``params`` collection.
      info: ``info.json``: ``model``, ``model_kwargs``, ``num_classes``, ``input_shape``,
        ``fingerprint`` and how it was made.
    """

    name: str
    model: nn.Module
    params: Any
    info: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.info["input_shape"])

    @property
    def num_classes(self) -> int:
        return int(self.info["num_classes"])


def available() -> tuple[str, ...]:
    """The names of the checkpoints that ship with the library."""
    if not CHECKPOINTS.is_dir():
        return ()
    return tuple(sorted(p.name for p in CHECKPOINTS.iterdir() if (p / INFO).is_file()))


def save(
    path: str | os.PathLike,
    model_name: str,
    params: Any,
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    model_kwargs: dict[str, Any] | None = None,
    **details: Any,
) -> dict[str, Any]:
    """Writes a checkpoint directory :func:`load` reads; returns its ``info``.

    Args:
      path: the directory (must not exist).
      model_name: a name of :func:`fedjax_lab.models.make_model`.
      params: the model's ``params`` collection.
      num_classes, input_shape, model_kwargs: what rebuilds the module.
      **details: JSON-serializable facts kept in ``info.json`` (the source task, accuracy).
    """
    path = pathlib.Path(path).absolute()
    if path.exists():
        raise FileExistsError(f"Refusing to overwrite {path}: choose a new directory.")
    model_kwargs = dict(model_kwargs or {})
    models.make_model(model_name, num_classes, **model_kwargs)  # the name and kwargs are valid
    params = jax.device_get(params)
    info = {
        "model": model_name,
        "model_kwargs": model_kwargs,
        "num_classes": int(num_classes),
        "input_shape": [int(s) for s in input_shape],
        "fingerprint": fingerprints.params_fingerprint(params),
        **details,
    }
    import orbax.checkpoint as ocp  # imported when a checkpoint is written or read

    path.mkdir(parents=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path / PARAMS, params)
    (path / INFO).write_text(json.dumps(info, indent=2) + "\n")
    return info


def load(name_or_path: str | os.PathLike) -> Pretrained:
    """A shipped checkpoint by name (:func:`available`) or a :func:`save` d one by path.

    Raises:
      ValueError: for a name that is neither, or parameters whose fingerprint differs from
        the one recorded (a damaged or altered checkpoint).
    """
    text = str(name_or_path)
    path = CHECKPOINTS / text if text in available() else pathlib.Path(text)
    if not (path / INFO).is_file():
        raise ValueError(
            f"No pre-trained model {text!r}: expected one of {available()} or the path of a "
            f"directory written by fedjax_lab.pretrained.save (holding {INFO} and {PARAMS}/). "
            "A recipe of fedjax_lab.pretrained.make (cifar10_resnet18, cifar100_vit) is made "
            f"first: python -m fedjax_lab.pretrained.make --names {text} --data-dir DIR."
        )
    info = json.loads((path / INFO).read_text())
    # JSON keeps tuples (such as a CNN's widths) as lists; flax fields want them hashable.
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in info["model_kwargs"].items()}
    model = models.make_model(info["model"], info["num_classes"], **kwargs)
    params = restore(path / PARAMS, model, tuple(info["input_shape"]))
    found = fingerprints.params_fingerprint(params)
    if found != info["fingerprint"]:
        raise ValueError(
            f"The parameters of the pre-trained model {text!r} have fingerprint {found}, not "
            f"the {info['fingerprint']} its {INFO} records: the checkpoint is damaged or altered."
        )
    return Pretrained(text, model, params, info)


def restore(path: str | os.PathLike, model: nn.Module, input_shape: tuple[int, ...]) -> Any:
    """The ``params`` of ``model`` from an orbax checkpoint at ``path`` (any flax module's
    parameters saved with ``orbax.checkpoint.StandardCheckpointer``).

    The structure, shapes and dtypes come from initializing ``model`` on a batch of
    ``input_shape``; a checkpoint that does not match them is an error.
    """
    path = pathlib.Path(path).absolute()
    if not path.is_dir():
        raise ValueError(f"No orbax checkpoint at {path}.")
    import orbax.checkpoint as ocp

    like = jax.eval_shape(lambda: models.init_params(model, input_shape, jax.random.key(0)))
    with ocp.StandardCheckpointer() as checkpointer:
        return jax.device_get(checkpointer.restore(path, like))
