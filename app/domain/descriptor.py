"""The descriptor document of a series: the complex reference data beside its configuration.

A series' configuration (`app.domain.series`) says how its official values are made; its
descriptor says what the series *is*: the instrument, the venues it trades on with their
sessions, the symbol each vendor (source) uses for it, and the calendars its snaps follow.
It is nested and free of reconciliation rules, so it lives in a document store (Amazon
DocumentDB) rather than in PostgreSQL; docs/descriptors.md describes it for users and
docs/descriptor.schema.json is its JSON schema (generated from these structs: `schema()`).

Every field is bounded (string lengths and patterns, list sizes) and unknown fields are
refused, so the largest valid document is known (well under `MAX_DESCRIPTOR_BYTES`) and
no client can store arbitrary nesting. Text never holds NUL (U+0000): the local store
(FerretDB) keeps documents in PostgreSQL `jsonb`, which cannot hold it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from app.domain.errors import FieldError

MAX_DESCRIPTOR_BYTES = 64 * 1024
"""Largest accepted request body (JSON) of a descriptor."""

MAX_VENUES = 16
MAX_SESSIONS = 8
MAX_VENDOR_SYMBOLS = 64
MAX_CALENDARS = 8
MAX_HOLIDAYS = 400
MAX_EARLY_CLOSES = 64
MAX_TAGS = 32

_TEXT = r"^[^\u0000]*$"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_TEXT)]
Description = Annotated[str, msgspec.Meta(max_length=2000, pattern=_TEXT)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
Isin = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$", description="ISIN")]
Mic = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Z0-9]{4}$", description="ISO 10383 market identifier code")
]
TimeZone = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$",
        max_length=64,
        description="IANA time zone name, e.g. Europe/London",
    ),
]
ClockTime = Annotated[
    str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM, 24 h")
]
Vendor = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
        description="the vendor's source name, as observations name it (e.g. bloomberg)",
    ),
]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=_TEXT)]
Key = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Day = Annotated[date, msgspec.Meta(description="a calendar day, YYYY-MM-DD")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
AssetClass = Literal[
    "fx", "equity", "rates", "credit", "commodity", "crypto", "index", "fund", "other"
]


class _Part(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every part: unknown fields are refused, none may be added silently."""


class Instrument(_Part, frozen=True, kw_only=True):
    """What is priced."""

    asset_class: AssetClass
    name: Name
    currency: Currency
    # The quote currency of a pair (EUR/USD: currency EUR, quote_currency USD).
    quote_currency: Currency | None = None
    isin: Isin | None = None
    description: Description = ""


class TradingSession(_Part, frozen=True, kw_only=True):
    """One trading session in the venue's time zone; `close` before `open` spans midnight."""

    days: Annotated[list[Weekday], msgspec.Meta(min_length=1, max_length=7)]
    open: ClockTime
    close: ClockTime


class Venue(_Part, frozen=True, kw_only=True):
    """A market the instrument trades on."""

    mic: Mic
    name: Name
    timezone: TimeZone
    primary: bool = False
    sessions: Annotated[list[TradingSession], msgspec.Meta(max_length=MAX_SESSIONS)] = []


class VendorSymbol(_Part, frozen=True, kw_only=True):
    """How one vendor names the instrument (`vendor` is a source of observations)."""

    vendor: Vendor
    symbol: Symbol
    # The vendor's field holding the value (e.g. PX_LAST), if it has several.
    field: Annotated[str, msgspec.Meta(max_length=64, pattern=_TEXT)] | None = None
    # The venue (a `mic` of `venues`) this symbol prices on, if it is venue-specific.
    venue: Mic | None = None


class EarlyClose(_Part, frozen=True, kw_only=True):
    """A day the calendar closes early, at `close` in the calendar's time zone."""

    day: Day
    close: ClockTime


class Calendar(_Part, frozen=True, kw_only=True):
    """A holiday calendar the series' snaps follow (no snap expected on a holiday)."""

    name: Key
    timezone: TimeZone
    holidays: Annotated[list[Day], msgspec.Meta(max_length=MAX_HOLIDAYS)] = []
    early_closes: Annotated[list[EarlyClose], msgspec.Meta(max_length=MAX_EARLY_CLOSES)] = []


class Descriptor(_Part, frozen=True, kw_only=True):
    """The descriptor document of a series (the body of `PUT .../descriptor`)."""

    instrument: Instrument
    venues: Annotated[list[Venue], msgspec.Meta(max_length=MAX_VENUES)] = []
    vendor_symbols: Annotated[list[VendorSymbol], msgspec.Meta(max_length=MAX_VENDOR_SYMBOLS)] = []
    calendars: Annotated[list[Calendar], msgspec.Meta(max_length=MAX_CALENDARS)] = []
    tags: Annotated[list[Key], msgspec.Meta(max_length=MAX_TAGS)] = []


class StoredDescriptor(msgspec.Struct, frozen=True, kw_only=True):
    """A series' descriptor as stored: `revision` counts its changes (1 for the first),
    `updated_at` is when the current revision was written (the database clock, a moment
    before its audit record's time)."""

    reference_data_id: str
    revision: int
    updated_at: datetime
    descriptor: Descriptor


def descriptor_problems(descriptor: Descriptor) -> list[FieldError]:
    """Rules across fields: venue MICs unique, at most one primary venue, a vendor
    symbol's venue among the venues, calendar names unique."""
    problems: list[FieldError] = []
    mics: set[str] = set()
    for i, venue in enumerate(descriptor.venues):
        if venue.mic in mics:
            problems.append(
                FieldError(loc=("venues", i, "mic"), msg=f"venue {venue.mic} appears twice")
            )
        mics.add(venue.mic)
    if sum(venue.primary for venue in descriptor.venues) > 1:
        problems.append(FieldError(loc=("venues",), msg="at most one venue may be primary"))
    for i, symbol in enumerate(descriptor.vendor_symbols):
        if symbol.venue is not None and symbol.venue not in mics:
            problems.append(
                FieldError(
                    loc=("vendor_symbols", i, "venue"),
                    msg=f"venue {symbol.venue} is not among venues",
                )
            )
    names: set[str] = set()
    for i, calendar in enumerate(descriptor.calendars):
        if calendar.name in names:
            problems.append(
                FieldError(
                    loc=("calendars", i, "name"), msg=f"calendar {calendar.name} appears twice"
                )
            )
        names.add(calendar.name)
    return problems


def schema() -> dict[str, Any]:
    """The descriptor's JSON schema (committed as docs/descriptor.schema.json)."""
    body = msgspec.json.schema(Descriptor)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Series descriptor",
        **body,
    }
