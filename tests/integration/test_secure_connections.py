"""The service's clients on the local stack's secured endpoints (`stack.sh env secure`):
Kafka SASL_SSL with SCRAM-SHA-512, a PostgreSQL that accepts TLS only (verify-full), and
Redis with TLS and AUTH; each checked against the local CA and refused without the right
credentials or trust. Secrets Manager lookups run against a moto server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import boto3
import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError
from litestar.testing import AsyncTestClient
from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError
from redis.exceptions import ConnectionError as RedisConnectionError

from app.adapters.aws_auth import CredentialsError
from app.adapters.kafka import new_consumer, new_producer, security_options
from app.adapters.postgres.migrate import bundled_migrations, migrate
from app.adapters.postgres.pool import connect, open_pool
from app.adapters.redis_cache import RedisCache, SharedContextSSLConnection, new_redis
from app.entrypoints.api import create_app
from app.ports import CacheUnavailable
from app.settings import Settings, load_settings
from tests.integration.test_ops_moto import _free_port, _wait_until_up
from tests.stack import REPO, stack

pytestmark = pytest.mark.integration

SSL_QUERY = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def _exports(text: str) -> dict[str, str]:
    """`export NAME=VALUE` lines (shell-quoted, as `stack.sh env` prints them)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export":
            name, _, value = words[1].partition("=")
            out[name] = value
    return out


@pytest.fixture(scope="module")
def secure_env(running_stack: None) -> dict[str, str]:
    env = _exports(stack("env", "secure"))
    # A TLS handshake on a busy two-core runner can exceed the 0.25 s production bound.
    env["QIS_REDIS__SOCKET_TIMEOUT_SECONDS"] = "5"
    env["QIS_TELEMETRY__ENABLED"] = "false"
    return env


@pytest.fixture(scope="module")
def secure(secure_env: dict[str, str]) -> Settings:
    settings = load_settings(secure_env)
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.db.ssl_mode == "verify-full"
    assert settings.redis.url.startswith("rediss://")
    return settings


def _kafka(secure: Settings, **changes: str) -> Settings:
    return msgspec.structs.replace(secure, kafka=msgspec.structs.replace(secure.kafka, **changes))


# --------------------------------------------------------------------------- Kafka


@pytest.fixture
async def sasl_topic(secure: Settings) -> AsyncIterator[str]:
    name = f"qis.test.sasl.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(
        bootstrap_servers=secure.kafka.bootstrap_servers, **security_options(secure.kafka)
    )
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def test_kafka_produce_and_consume_over_sasl_ssl(secure: Settings, sasl_topic: str) -> None:
    producer = new_producer(secure.kafka)
    await producer.start()
    try:
        sent = [f"record-{i}".encode() for i in range(20)]
        for i, value in enumerate(sent):
            await producer.send_and_wait(sasl_topic, value, key=str(i % 3).encode())
    finally:
        await producer.stop()

    consumer = new_consumer(secure.kafka, f"qis-test-{uuid.uuid4().hex[:8]}", "qis-test-sasl")
    consumer.subscribe([sasl_topic])
    await consumer.start()
    received: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(received) < len(sent):
                batches = await consumer.getmany(timeout_ms=500)
                received += [r.value for records in batches.values() for r in records if r.value]
    finally:
        await consumer.stop()
    assert sorted(received) == sorted(sent)


async def test_kafka_wrong_password_is_refused_with_a_clear_error(
    secure: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = _kafka(secure, sasl_password="not-the-password").kafka
    producer = new_producer(wrong)
    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        try:
            with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
                await asyncio.wait_for(producer.start(), 30)
        finally:
            await producer.stop()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "SaslAuthenticationFailed" in logged
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in logged
    assert "not-the-password" not in logged


async def test_kafka_broker_certificate_is_verified(
    secure: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Without the local CA (only the system's trust store), the broker's certificate is
    # not trusted: the client gives up before it sends its credentials.
    untrusting = _kafka(secure, ssl_ca_file="").kafka
    producer = AIOKafkaProducer(
        bootstrap_servers=untrusting.bootstrap_servers, **security_options(untrusting)
    )
    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        try:
            with pytest.raises(KafkaConnectionError):
                await asyncio.wait_for(producer.start(), 30)
        finally:
            await producer.stop()
    assert "CERTIFICATE_VERIFY_FAILED" in "\n".join(r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- PostgreSQL


async def test_postgres_verify_full_connects_over_tls(secure: Settings) -> None:
    conn = await connect(secure.db.writer_dsn, secure.db)
    try:
        is_ssl, version = await conn.fetchrow(SSL_QUERY)
    finally:
        await conn.close()
    assert is_ssl is True
    assert version in ("TLSv1.2", "TLSv1.3")

    pool = await open_pool(secure.db.reader_dsn, secure.db)
    try:
        rows = await asyncio.gather(*(pool.fetchrow(SSL_QUERY) for _ in range(4)))
    finally:
        await pool.close()
    assert all(row["ssl"] is True for row in rows)


async def test_postgres_plaintext_connection_is_refused(secure: Settings) -> None:
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(secure.db.writer_dsn, ssl=False)


async def test_postgres_server_certificate_is_verified(secure: Settings) -> None:
    # verify-full against the system trust store, which does not hold the local CA.
    untrusting = msgspec.structs.replace(secure.db, ssl_root_cert="")
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        await connect(secure.db.writer_dsn, untrusting)


# --------------------------------------------------------------------------- Redis


async def test_redis_over_tls_with_auth(secure: Settings) -> None:
    client = new_redis(secure.redis)
    key = f"qis-test-tls-{uuid.uuid4().hex}"
    try:
        assert await client.set(key, b"value", ex=60)
        assert await client.get(key) == b"value"
        tls_port = await client.config_get("tls-port")
        port = await client.config_get("port")
    finally:
        await client.aclose()
    assert tls_port == {"tls-port": secure.redis.url.rsplit(":", 1)[1].split("/")[0]}
    assert port == {"port": "0"}  # no plaintext port at all


async def test_redis_connections_share_one_tls_context(secure: Settings) -> None:
    # redis-py would build (and load a CA store into) a context per new connection.
    client = new_redis(secure.redis)
    try:
        await asyncio.gather(*(client.ping() for _ in range(8)))
        pool = client.connection_pool
        connections = [*pool._available_connections, *pool._in_use_connections]
        assert len(connections) > 1
        assert {type(c) for c in connections} == {SharedContextSSLConnection}
        assert len({id(c.ssl_context.get()) for c in connections}) == 1
    finally:
        await client.aclose()
    assert pool._available_connections == [] or all(
        not c.is_connected for c in pool._available_connections
    )


async def test_redis_without_auth_is_refused(secure: Settings) -> None:
    anonymous = msgspec.structs.replace(secure.redis, password="")
    client = new_redis(anonymous)
    try:
        with pytest.raises(AuthenticationError, match="Authentication required"):
            await client.ping()
    finally:
        await client.aclose()


async def test_redis_wrong_password_is_refused(secure: Settings) -> None:
    wrong = msgspec.structs.replace(secure.redis, password="not-the-token")
    client = new_redis(wrong)
    try:
        with pytest.raises(
            (AuthenticationError, AuthenticationWrongNumberOfArgsError), match="invalid"
        ):
            await client.ping()
    finally:
        await client.aclose()


async def test_redis_server_certificate_is_verified(secure: Settings) -> None:
    untrusting = msgspec.structs.replace(secure.redis, ssl_ca_file="")
    client = new_redis(untrusting)
    try:
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.ping()
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- the service


async def test_service_is_ready_on_the_secured_endpoints(secure: Settings) -> None:
    # The API's own wiring (pools, publication listener, producer, cache client, and the
    # document store's client over TLS).
    assert secure.documents.url.endswith("?tls=true")
    assert secure.documents.tls_ca_file
    async with AsyncTestClient(app=create_app(secure)) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"] == {"postgres": "ok", "kafka": "ok", "redis": "ok", "documentdb": "ok"}


def test_cli_migrates_and_creates_topics_over_tls(secure_env: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QIS_")} | secure_env
    qis = str(Path(sys.executable).with_name("qis"))
    migrated = subprocess.run(
        [qis, "db", "migrate"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "migration(s)" in migrated.stdout
    topics = subprocess.run(
        [qis, "kafka", "topics"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert topics.returncode == 0, topics.stderr
    assert "qis.observations.v1\t" in topics.stdout
    assert secure_env["QIS_KAFKA__SASL_PASSWORD"] not in migrated.stderr + topics.stderr


# --------------------------------------------------------------------------- Secrets Manager


@pytest.fixture(scope="module")
def secrets_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server (Secrets Manager) of our own; boto3 clients of the service reach it
    through AWS_ENDPOINT_URL_SECRETS_MANAGER, with fake credentials."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    executable = Path(sys.executable).with_name("moto_server")
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as output, pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": url,
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        process = subprocess.Popen(
            [str(executable), "-p", str(port), "-H", "127.0.0.1"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_up(port, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _put_secret(url: str, value: str) -> str:
    client = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=url)
    name = f"qis/test/{uuid.uuid4().hex[:10]}"
    arn: str = client.create_secret(Name=name, SecretString=value)["ARN"]
    return arn


async def test_credentials_from_secrets_manager(
    secure: Settings, secure_env: dict[str, str], secrets_manager: str
) -> None:
    # Aurora's managed master secret: JSON with username and password; the DSN names
    # neither. MSK's SCRAM secret: the same form. ElastiCache's AUTH token: a bare string.
    db_secret = _put_secret(
        secrets_manager, json.dumps({"username": "qis", "password": "qis", "engine": "postgres"})
    )
    kafka_secret = _put_secret(
        secrets_manager,
        json.dumps({"username": "qis", "password": secure_env["QIS_KAFKA__SASL_PASSWORD"]}),
    )
    redis_secret = _put_secret(secrets_manager, secure_env["QIS_REDIS__PASSWORD"])
    port = secure.db.writer_dsn.rsplit(":", 1)[1].split("/")[0]
    env = {
        k: v
        for k, v in secure_env.items()
        if k not in ("QIS_KAFKA__SASL_USERNAME", "QIS_KAFKA__SASL_PASSWORD", "QIS_REDIS__PASSWORD")
    } | {
        "QIS_DB__WRITER_DSN": f"postgresql://127.0.0.1:{port}/qis",
        "QIS_DB__READER_DSN": f"postgresql://127.0.0.1:{port}/qis",
        "QIS_DB__AUTH": "secrets_manager",
        "QIS_DB__PASSWORD_SECRET_ID": db_secret,
        "QIS_KAFKA__SASL_SECRET_ID": kafka_secret,
        "QIS_REDIS__PASSWORD_SECRET_ID": redis_secret,
    }
    settings = load_settings(env)

    conn = await connect(settings.db.writer_dsn, settings.db)
    try:
        assert await conn.fetchval("SELECT current_user") == "qis"
        assert (await conn.fetchrow(SSL_QUERY))["ssl"] is True
    finally:
        await conn.close()

    producer = new_producer(settings.kafka)
    await producer.start()
    try:
        metadata = await producer.send_and_wait(settings.kafka.audit_topic, b"from-secret")
    finally:
        await producer.stop()
    assert metadata.offset >= 0

    client = new_redis(settings.redis)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()


async def test_a_missing_secret_is_named_in_the_error(
    secure: Settings, secrets_manager: str
) -> None:
    db = msgspec.structs.replace(
        secure.db, auth="secrets_manager", password_secret_id="qis/test/does-not-exist"
    )
    with pytest.raises(CredentialsError, match=r"qis/test/does-not-exist.*ResourceNotFound"):
        await connect(secure.db.writer_dsn, db)


async def test_redis_secret_failure_makes_the_cache_unavailable_not_the_reads(
    secure: Settings, secrets_manager: str
) -> None:
    missing = msgspec.structs.replace(
        secure.redis, password="", password_secret_id="qis/test/no-redis-token"
    )
    client = new_redis(missing)
    try:
        with pytest.raises(CacheUnavailable, match="qis/test/no-redis-token"):
            await RedisCache(client).get("official:{X}:latest")
    finally:
        await client.aclose()


@pytest.fixture(scope="module", autouse=True)
async def migrated_tls_database(secure: Settings) -> None:
    """The TLS cluster's database carries the schema (the service's readiness reads it)."""
    conn = await connect(secure.db.writer_dsn, secure.db)
    try:
        await migrate(conn, bundled_migrations())
    finally:
        await conn.close()
