"""`DescriptorStore` on Amazon DocumentDB through PyMongo's asyncio API (`AsyncMongoClient`).

One collection, one document per series, `_id` = the series id:

    {"_id": "ETH-USD", "revision": 3, "updated_at": "2026-01-15T14:00:03.123456Z",
     "descriptor": {"instrument": {...}, "venues": [...], "vendor_symbols": [...], ...}}

The descriptor is stored as plain JSON types (msgspec's builtins: dates and times as
strings), so what is read back decodes into the same structs. `updated_at` is a string
too: BSON dates keep milliseconds only, and the api's timestamps have microseconds.

What DocumentDB asks of a client: TLS with its CA bundle (`tls_ca_file`), no retryable
writes (`retryWrites=false`; a write is retried by the caller, against the revision), and
bounded waits (connect, server selection, socket). `setup()` creates the nested index on
the vendor symbols (`descriptor.vendor_symbols.vendor`, `.symbol`) that
`with_vendor_symbol` uses. Only plain finds, conditional replaces and deletes are used:
no aggregation (FerretDB, the local counterpart, does not do aggregation field paths in
`$project`, nor `$elemMatch` on sub-document fields: the element-wise match of vendor
and symbol is checked here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError, ExecutionTimeout
from pymongo.monitoring import CommandListener

from app.domain.descriptor import StoredDescriptor
from app.domain.timestamps import rfc3339
from app.ports import DescriptorStoreUnavailable
from app.settings import DocumentSettings

VENDOR_SYMBOL_INDEX = "vendor_symbol"
_UNAVAILABLE = (ConnectionFailure, ExecutionTimeout)  # ConnectionFailure: network, timeouts


def new_client(
    settings: DocumentSettings, listeners: Sequence[CommandListener] = ()
) -> AsyncMongoClient[dict[str, Any]]:
    """A client as DocumentDB needs it (connections open lazily, on the first operation);
    `listeners` see every command (PyMongo's command monitoring: the api's metrics)."""
    options: dict[str, Any] = {}
    if listeners:
        options.update(event_listeners=list(listeners))
    if settings.tls_ca_file:
        options.update(tls=True, tlsCAFile=settings.tls_ca_file)
    return AsyncMongoClient(
        settings.url,
        retryWrites=False,
        connectTimeoutMS=int(settings.connect_timeout_seconds * 1000),
        serverSelectionTimeoutMS=int(settings.server_selection_timeout_seconds * 1000),
        socketTimeoutMS=int(settings.operation_timeout_seconds * 1000),
        maxPoolSize=settings.max_pool_size,
        appname="qis",
        **options,
    )


@asynccontextmanager
async def _unavailable() -> AsyncIterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise DescriptorStoreUnavailable(f"document store: {exc}"[:300]) from exc


class DocumentDbDescriptors:
    """The descriptor documents of every series, in one collection."""

    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], database: str, collection: str
    ) -> None:
        self._client = client
        self._collection = client[database][collection]

    @classmethod
    def from_settings(
        cls, client: AsyncMongoClient[dict[str, Any]], settings: DocumentSettings
    ) -> DocumentDbDescriptors:
        return cls(client, settings.database, settings.collection)

    async def setup(self) -> None:
        """Create the collection's nested vendor-symbol index (idempotent)."""
        async with _unavailable():
            await self._collection.create_index(
                [
                    ("descriptor.vendor_symbols.vendor", ASCENDING),
                    ("descriptor.vendor_symbols.symbol", ASCENDING),
                ],
                name=VENDOR_SYMBOL_INDEX,
            )

    async def get(self, reference_data_id: str) -> StoredDescriptor | None:
        async with _unavailable():
            document = await self._collection.find_one({"_id": reference_data_id})
        return None if document is None else _stored(document)

    async def put(self, stored: StoredDescriptor, previous_revision: int) -> bool:
        document = _document(stored)
        async with _unavailable():
            if previous_revision == 0:
                try:
                    await self._collection.insert_one({"_id": stored.reference_data_id, **document})
                except DuplicateKeyError:
                    return False
                return True
            result = await self._collection.replace_one(
                {"_id": stored.reference_data_id, "revision": previous_revision}, document
            )
        return result.matched_count == 1

    async def restore(self, previous: StoredDescriptor | None, revision: int, series: str) -> None:
        match = {"_id": series, "revision": revision}
        async with _unavailable():
            if previous is None:
                await self._collection.delete_one(match)
            else:
                await self._collection.replace_one(match, _document(previous))

    async def with_vendor_symbol(self, vendor: str, symbol: str) -> list[str]:
        query = {
            "descriptor.vendor_symbols.vendor": vendor,
            "descriptor.vendor_symbols.symbol": symbol,
        }
        projection = {"_id": 1, "descriptor.vendor_symbols": 1}
        found: list[str] = []
        async with _unavailable():
            async for document in self._collection.find(query, projection).sort("_id", 1):
                symbols = document.get("descriptor", {}).get("vendor_symbols", [])
                # Vendor and symbol of one and the same mapping, not of two.
                if any(s.get("vendor") == vendor and s.get("symbol") == symbol for s in symbols):
                    found.append(document["_id"])
        return found

    async def ping(self) -> None:
        """Raise when the store does not answer."""
        async with _unavailable():
            await self._client.admin.command("ping")


class DocumentStoreHealth:
    """Readiness of the document store; not required (only the descriptor routes need it)."""

    name = "documentdb"
    required = False

    def __init__(self, store: DocumentDbDescriptors) -> None:
        self._store = store

    async def ping(self) -> None:
        await self._store.ping()


def _document(stored: StoredDescriptor) -> dict[str, Any]:
    return {
        "revision": stored.revision,
        "updated_at": rfc3339(stored.updated_at),
        "descriptor": msgspec.to_builtins(stored.descriptor),
    }


def _stored(document: dict[str, Any]) -> StoredDescriptor:
    fields = {k: v for k, v in document.items() if k != "_id"}
    return msgspec.convert({**fields, "reference_data_id": document["_id"]}, StoredDescriptor)
