"""Where the library keeps what it can rebuild: generated datasets, compiled programs.

Everything lives under one directory: ``$FEDJAX_LAB_CACHE_DIR`` when it is set, else
``$XDG_CACHE_HOME/fedjax_lab``, else ``~/.cache/fedjax_lab``. Deleting it loses nothing
but time.
"""

from __future__ import annotations

import os
import pathlib

ENV = "FEDJAX_LAB_CACHE_DIR"


def cache_dir(*parts: str) -> pathlib.Path:
    """The cache directory (see the module docstring) joined with ``parts``; not created."""
    root = os.environ.get(ENV)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "fedjax_lab")
    return pathlib.Path(root, *parts)
