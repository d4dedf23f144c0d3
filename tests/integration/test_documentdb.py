"""The DocumentDB adapter against the real local document store (FerretDB 1.24.2 on the
stack's PostgreSQL), over plaintext and over TLS checked against the stack's CA."""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator

import msgspec
import pytest
from pymongo.errors import OperationFailure

from app.adapters.documentdb import VENDOR_SYMBOL_INDEX, DocumentDbDescriptors, new_client
from app.ports import DescriptorStoreUnavailable
from app.settings import DocumentSettings
from tests.e2e.conftest import free_port
from tests.integration.descriptor_helpers import (
    descriptor,
    descriptor_store,
    document_settings,
    stored,
)


@pytest.fixture(params=["plain", "secure"])
def documents(request: pytest.FixtureRequest, running_stack: None) -> DocumentSettings:
    return document_settings(request.param)


@pytest.fixture
async def store(documents: DocumentSettings) -> AsyncIterator[DocumentDbDescriptors]:
    async with descriptor_store(documents) as store:
        await store.setup()
        yield store


def test_the_stack_exports_tls_with_its_ca() -> None:
    secure = document_settings("secure")
    assert secure.url.endswith("/?tls=true")
    assert secure.tls_ca_file.endswith("/tls/ca.pem")
    assert document_settings("plain").tls_ca_file == ""


async def test_round_trip_and_conditional_writes(store: DocumentDbDescriptors) -> None:
    first = stored("EURUSD", 1, descriptor(("bloomberg", "EURUSD Curncy")))
    assert await store.get("EURUSD") is None
    assert await store.put(first, 0) is True
    assert await store.put(first, 0) is False  # exists already: a concurrent creator lost

    back = await store.get("EURUSD")
    assert back == first  # every nested field, dates and the microsecond timestamp included

    second = stored("EURUSD", 2, descriptor(("bloomberg", "EUR Curncy"), name="EUR/USD"))
    assert await store.put(second, 1) is True
    stale = stored("EURUSD", 2, descriptor(("refinitiv", "EUR=")))
    assert await store.put(stale, 1) is False  # revision 1 is no longer stored
    current = await store.get("EURUSD")
    assert current is not None
    assert current.revision == 2
    assert current.descriptor.instrument.name == "EUR/USD"
    assert current.descriptor.vendor_symbols[0].symbol == "EUR Curncy"


async def test_restore_undoes_only_the_write_it_names(store: DocumentDbDescriptors) -> None:
    first = stored("GBPUSD", 1, descriptor(("bloomberg", "GBPUSD Curncy")))
    second = stored("GBPUSD", 2, descriptor(("bloomberg", "GBP Curncy")))
    await store.put(first, 0)
    await store.put(second, 1)

    await store.restore(first, 3, "GBPUSD")  # not the stored revision: nothing happens
    assert await store.get("GBPUSD") == second
    await store.restore(first, 2, "GBPUSD")
    assert await store.get("GBPUSD") == first
    await store.restore(None, 1, "GBPUSD")  # undoing a creation deletes
    assert await store.get("GBPUSD") is None


async def test_find_by_vendor_symbol_matches_one_mapping(store: DocumentDbDescriptors) -> None:
    await store.put(stored("B.SERIES", 1, descriptor(("bloomberg", "X"), ("ecb", "Y"))), 0)
    await store.put(stored("A.SERIES", 1, descriptor(("bloomberg", "X"))), 0)
    # bloomberg and X both appear, but in two different mappings: not a match.
    await store.put(stored("C.SERIES", 1, descriptor(("bloomberg", "Z"), ("ecb", "X"))), 0)

    assert await store.with_vendor_symbol("bloomberg", "X") == ["A.SERIES", "B.SERIES"]
    assert await store.with_vendor_symbol("ecb", "X") == ["C.SERIES"]
    assert await store.with_vendor_symbol("ecb", "Z") == []


async def test_setup_creates_the_nested_index_once(
    store: DocumentDbDescriptors, documents: DocumentSettings
) -> None:
    await store.setup()  # again: idempotent
    client = new_client(documents)
    try:
        collection = client[documents.database][documents.collection]
        indexes = {i["name"]: dict(i["key"]) async for i in await collection.list_indexes()}
    finally:
        await client.close()
    assert indexes[VENDOR_SYMBOL_INDEX] == {
        "descriptor.vendor_symbols.vendor": 1,
        "descriptor.vendor_symbols.symbol": 1,
    }
    assert set(indexes) == {"_id_", VENDOR_SYMBOL_INDEX}


async def test_the_stored_document_is_plain_json(
    store: DocumentDbDescriptors, documents: DocumentSettings
) -> None:
    await store.put(stored("EURCHF", 1, descriptor(("bloomberg", "EURCHF Curncy"))), 0)
    client = new_client(documents)
    try:
        raw = await client[documents.database][documents.collection].find_one({"_id": "EURCHF"})
    finally:
        await client.close()
    assert raw is not None
    assert raw["revision"] == 1
    assert raw["updated_at"] == "2026-01-15T14:00:05.123456Z"
    assert raw["descriptor"]["calendars"][0]["holidays"] == ["2026-12-25"]
    assert raw["descriptor"]["vendor_symbols"] == [
        {"vendor": "bloomberg", "symbol": "EURCHF Curncy", "field": None, "venue": None}
    ]


async def test_tls_without_the_ca_is_refused(running_stack: None) -> None:
    """The server certificate is checked: the system trust store does not know the local CA."""
    secure = document_settings("secure")
    no_ca = msgspec.structs.replace(secure, tls_ca_file="", server_selection_timeout_seconds=1.0)
    # PyMongo leaves the socket of a failed TLS handshake to the garbage collector:
    # collect it here, where its ResourceWarning is expected, not in a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        client = new_client(no_ca)
        try:
            store = DocumentDbDescriptors.from_settings(client, no_ca)
            with pytest.raises(DescriptorStoreUnavailable, match=r"(?i)certificate verify failed"):
                await store.get("EURUSD")
        finally:
            await client.close()
        del client, store
        gc.collect()


async def test_an_unreachable_store_is_unavailable_within_its_bound() -> None:
    unreachable = DocumentSettings(
        enabled=True,
        url=f"mongodb://127.0.0.1:{free_port()}/",
        server_selection_timeout_seconds=0.5,
        connect_timeout_seconds=0.5,
    )
    client = new_client(unreachable)
    try:
        store = DocumentDbDescriptors.from_settings(client, unreachable)
        with pytest.raises(DescriptorStoreUnavailable):
            await store.get("EURUSD")
        with pytest.raises(DescriptorStoreUnavailable):
            await store.put(stored("EURUSD", 1, descriptor()), 0)
    finally:
        await client.close()


class RecordedCommands:
    def __init__(self) -> None:
        self.commands: list[tuple[str, float, bool]] = []

    def document_command(self, operation: str, milliseconds: float, failed: bool) -> None:
        self.commands.append((operation, milliseconds, failed))


async def test_every_command_is_measured_through_command_monitoring(
    documents: DocumentSettings,
) -> None:
    from app.telemetry.documents import DocumentStoreCommands

    recorded = RecordedCommands()
    client = new_client(documents, [DocumentStoreCommands(recorded)])
    store = DocumentDbDescriptors.from_settings(client, documents)
    try:
        await store.setup()
        await store.put(stored("USDJPY", 1, descriptor(("bloomberg", "USDJPY Curncy"))), 0)
        assert await store.put(stored("USDJPY", 2, descriptor(("x", "y"))), 1) is True
        assert await store.get("USDJPY") is not None
        await store.ping()
    finally:
        await client.drop_database(documents.database)
        await client.close()

    measured = [(op, failed) for op, _, failed in recorded.commands if op != "other"]
    assert measured == [
        ("createIndexes", False),
        ("insert", False),
        ("update", False),
        ("find", False),
        ("ping", False),
    ]
    assert all(ms >= 0 for _, ms, _ in recorded.commands)


async def test_a_failed_command_is_counted_as_failed(documents: DocumentSettings) -> None:
    from app.telemetry.documents import DocumentStoreCommands

    recorded = RecordedCommands()
    client = new_client(documents, [DocumentStoreCommands(recorded)])
    try:
        with pytest.raises(OperationFailure, match="no such command"):
            await client[documents.database].command("qisNoSuchCommand")
    finally:
        await client.close()
    assert ("other", True) in [(op, failed) for op, _, failed in recorded.commands]


async def test_commands_are_traced_by_the_pymongo_instrumentation(running_stack: None) -> None:
    """What app/telemetry/setup.py installs: a client span per command (X-Ray's
    service map shows the document store). Once per process: PyMongo's command
    listeners cannot be unregistered, so instrumenting twice is not a clean test."""
    documents = document_settings("plain")
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = PymongoInstrumentor()
    already = instrumentor.is_instrumented_by_opentelemetry
    if already:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=provider)
    try:
        async with descriptor_store(documents) as store:
            tracer = provider.get_tracer("test")
            with tracer.start_as_current_span("request"):
                assert await store.get("NOPE") is None
    finally:
        instrumentor.uninstrument()
        if already:
            instrumentor.instrument()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    (find,) = [s for name, s in spans.items() if name.endswith("find")]
    assert find.attributes is not None
    assert find.attributes["db.system"] == "mongodb"
    assert find.parent is not None
    assert find.parent.span_id == spans["request"].context.span_id
