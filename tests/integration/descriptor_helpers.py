"""Descriptor documents for the tests, and the local document store's settings (FerretDB
of the stack, plaintext and TLS, as `stack.sh env` exports them)."""

from __future__ import annotations

import shlex
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from app.adapters.documentdb import DocumentDbDescriptors, new_client
from app.domain.descriptor import (
    Calendar,
    Descriptor,
    Instrument,
    StoredDescriptor,
    VendorSymbol,
    Venue,
)
from app.settings import DocumentSettings
from tests.stack import stack

AT = datetime(2026, 1, 15, 14, 0, 5, 123456, tzinfo=UTC)


def document_settings(variant: str) -> DocumentSettings:
    """`plain` or `secure` (TLS checked against the stack's CA), in a database of its own."""
    exports: dict[str, str] = {}
    for line in stack("env", variant).splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export":
            name, _, value = words[1].partition("=")
            exports[name] = value
    return DocumentSettings(
        enabled=exports["QIS_DOCUMENTS__ENABLED"] == "true",
        url=exports["QIS_DOCUMENTS__URL"],
        tls_ca_file=exports.get("QIS_DOCUMENTS__TLS_CA_FILE", ""),
        database=f"qis_test_{uuid.uuid4().hex[:12]}",
    )


@asynccontextmanager
async def descriptor_store(settings: DocumentSettings) -> AsyncIterator[DocumentDbDescriptors]:
    """The adapter on its own database, dropped afterwards."""
    client = new_client(settings)
    try:
        yield DocumentDbDescriptors.from_settings(client, settings)
    finally:
        await client.drop_database(settings.database)
        await client.close()


def descriptor(*symbols: tuple[str, str], name: str = "Euro / US dollar") -> Descriptor:
    return Descriptor(
        instrument=Instrument(asset_class="fx", name=name, currency="EUR", quote_currency="USD"),
        venues=[Venue(mic="XLON", name="London", timezone="Europe/London", primary=True)],
        vendor_symbols=[VendorSymbol(vendor=v, symbol=s) for v, s in symbols],
        calendars=[
            Calendar(name="target", timezone="Europe/Berlin", holidays=[date(2026, 12, 25)])
        ],
    )


def stored(series: str, revision: int, doc: Descriptor) -> StoredDescriptor:
    return StoredDescriptor(
        reference_data_id=series, revision=revision, updated_at=AT, descriptor=doc
    )


def body(doc: Descriptor) -> dict[str, Any]:
    """The JSON a client sends."""
    value: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(doc))
    return value
