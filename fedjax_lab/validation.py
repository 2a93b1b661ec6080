"""Small validators shared by every public entry point."""

from __future__ import annotations

import difflib
from typing import Iterable


def unknown_name_error(
    kind: str, value: object, known: Iterable[str], *, show: int = 40
) -> ValueError:
    """A ValueError for a name not among ``known``, naming the closest known ones.

    Args:
      kind: what the name is ("algorithm", "config key", ...).
      value: the name given.
      known: the accepted names.
      show: list the accepted names when there are at most this many.
    """
    known = list(known)
    close = difflib.get_close_matches(str(value), known, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    listing = f" Available: {', '.join(known)}." if len(known) <= show else ""
    return ValueError(f"Unknown {kind} {value!r}.{hint}{listing}")


def one_line(error: BaseException, *, limit: int | None = None) -> str:
    """An exception's message on one line (whitespace collapsed), cut after ``limit`` chars."""
    text = " ".join(str(error).split()) or type(error).__name__
    if limit is not None and len(text) > limit:
        return text[:limit] + "..."
    return text


def check_name(kind: str, value: object, known: Iterable[str]) -> None:
    """Raises :func:`unknown_name_error` unless ``value`` is one of ``known``."""
    known = list(known)
    if value not in known:
        raise unknown_name_error(kind, value, known)


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int; a ValueError unless it is an integer >= 1."""
    import numpy as np  # numpy integers count as integers

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Expected {name} to be an integer >= 1, got {value!r}.")
    return int(value)
