"""One config key: its dotted name, default, type and meaning (a leaf module, importing nothing
of the library)."""

from __future__ import annotations

from typing import Any, NamedTuple


class Field(NamedTuple):
    """One config key: its dotted name, default, type and what it means."""

    key: str
    default: Any
    help: str
    type: type | None = None  # for a None default; else type(default)

    @property
    def kind(self) -> type:
        return self.type if self.type is not None else type(self.default)

    @property
    def section(self) -> str | None:
        """The section of a dotted key (``"dp"`` for ``"dp.clip_norm"``), None at the top."""
        return self.key.split(".")[0] if "." in self.key else None
