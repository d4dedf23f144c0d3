"""Domain errors: what a client did wrong, in terms the HTTP layer can render."""

from __future__ import annotations

import msgspec


class FieldError(msgspec.Struct, frozen=True, kw_only=True):
    """One invalid field; `loc` is the path to it, e.g. `("bounds", 0)`."""

    loc: tuple[str | int, ...]
    msg: str


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidSeriesConfig(DomainError):
    """A series configuration broke one or more rules; each is listed in `errors`."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
