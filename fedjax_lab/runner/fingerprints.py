"""A fingerprint of a pytree: the sha256 of every leaf's path, dtype, shape and bytes.

Two runs that end with the same fingerprint hold bitwise the same values. Run summaries
record the fingerprint of the final models; checkpoints record the one of the state they
hold, and restoring checks it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np


def params_fingerprint(tree: Any) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes, in tree order (host values)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        leaf = np.asarray(leaf)
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{leaf.dtype}{leaf.shape}".encode())
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()
