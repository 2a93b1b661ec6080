"""MNIST-1D: ten 1-D digit templates, procedurally padded, scaled, shifted, sheared and
noised into signals of length 40 (Greydanus and Kobak, "Scaling Down Deep Learning with
MNIST-1D", ICML 2024).

The signals are generated with the ``mnist1d`` package's ``make_dataset`` (nothing is
downloaded) from its default generation arguments, with ``num_samples`` and ``seed`` of
our choosing; ``train_split`` (0.8) divides them into a training and a test set. The
package's default of 5,000 samples (4,000 to train) is its paper's benchmark; 100
federated clients need more, so the config's default is larger (``data.mnist1d_samples``).

Generation takes seconds per 10,000 samples, so every set is generated once per
generation arguments and kept in the cache (:mod:`fedjax_lab.caches`,
``mnist1d/<key>.npz``), with a SHA-256 fingerprint of its arrays that each read checks;
a file that fails the check (cut short, changed) is generated again.

References:
  Greydanus and Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from typing import Any

import numpy as np

from fedjax_lab import caches

LENGTH = 40  # the signals' length (the package's final_seq_length)
NUM_CLASSES = 10
DEFAULT_SAMPLES = 20_000  # 16,000 to train: 160 examples per client of 100


def generation_args(num_samples: int, seed: int) -> dict[str, Any]:
    """The arguments ``make_dataset`` receives: the package's defaults (its download address
    left out) with ``num_samples`` and ``seed``. Runs record them (``config.json``)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 10:
        raise ValueError(
            f"Expected mnist1d num_samples to be an integer >= 10 (one per class; the config "
            f"key data.mnist1d_samples), got {num_samples!r}."
        )
    from mnist1d.data import get_dataset_args  # imported when a set is generated or keyed

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args.update(num_samples=int(num_samples), seed=int(seed))
    if args["final_seq_length"] != LENGTH:
        raise ValueError(f"Expected mnist1d signals of length {LENGTH}, got {args}.")
    return args


def load(num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: x float32 ``[n, 40]``, y int32 ``[n]``,
    from the cache or generated (and then cached)."""
    args = generation_args(num_samples, seed)
    path = cache_path(args)
    arrays = _read(path)
    if arrays is None:
        arrays = _generate(args)
        try:
            _write(path, arrays, args)
        except OSError as error:  # the cache saves time only: train on
            warnings.warn(f"MNIST-1D not cached ({path}: {error}); the next run generates it.")
    return arrays


def cache_path(args: dict[str, Any]):
    """The cache file of one set of generation arguments (their SHA-256, with the
    package's version)."""
    from importlib import metadata

    keyed = json.dumps({"args": args, "mnist1d": metadata.version("mnist1d")}, sort_keys=True)
    return caches.cache_dir("mnist1d") / f"{hashlib.sha256(keyed.encode()).hexdigest()[:20]}.npz"


def fingerprint(arrays: tuple[np.ndarray, ...]) -> str:
    """SHA-256 over the arrays' dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


_NAMES = ("x_train", "y_train", "x_test", "y_test")


def _generate(args: dict[str, Any]) -> tuple[np.ndarray, ...]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    saved = np.random.get_state()  # make_dataset seeds NumPy's global generator
    try:
        made = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(saved)
    return (
        made["x"].astype(np.float32),
        made["y"].astype(np.int32),
        made["x_test"].astype(np.float32),
        made["y_test"].astype(np.int32),
    )


def _read(path) -> tuple[np.ndarray, ...] | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as stored:
            arrays = tuple(stored[name] for name in _NAMES)
            recorded = str(stored["fingerprint"])
    except Exception as error:  # a cut or foreign file (BadZipFile, EOFError, KeyError, ...)
        warnings.warn(f"Generating MNIST-1D again: the cached {path} is unreadable ({error}).")
        return None
    if fingerprint(arrays) != recorded:
        warnings.warn(f"Generating MNIST-1D again: the cached {path} fails its fingerprint.")
        return None
    return arrays


def _write(path, arrays: tuple[np.ndarray, ...], args: dict[str, Any]) -> None:
    """Written beside the target and renamed into place, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(
                f,
                **dict(zip(_NAMES, arrays)),
                fingerprint=fingerprint(arrays),
                args=json.dumps(args, sort_keys=True),
            )
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a cache is for every run
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
