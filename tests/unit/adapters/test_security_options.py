"""What the settings turn into for each client: TLS contexts that verify, SASL and AUTH
arguments, password sources; impossible combinations refused; secrets never shown."""

from __future__ import annotations

import logging
import ssl

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from redis.exceptions import RedisError

from app.adapters import aws_auth
from app.adapters.kafka import security_options as kafka_options
from app.adapters.postgres.pool import connect_options, ssl_option
from app.adapters.redis_cache import SecretCredentialProvider
from app.adapters.redis_cache import security_options as redis_options
from app.settings import (
    DbSettings,
    KafkaSettings,
    RedisSettings,
    SettingsError,
    load_settings,
    redacted,
)

REGION = "eu-west-1"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


# --------------------------------------------------------------------------- Kafka


def test_kafka_plaintext_by_default() -> None:
    assert kafka_options(KafkaSettings()) == {}


def test_kafka_scram_over_tls_verifies_the_broker() -> None:
    options = kafka_options(
        KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="qis",
            sasl_password="pw",
        )
    )
    context = options.pop("ssl_context")
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "qis",
        "sasl_plain_password": "pw",
    }


async def test_kafka_msk_iam_is_oauthbearer_with_the_signer(aws_env: None) -> None:
    settings = KafkaSettings(
        bootstrap_servers="b-1.msk.example:9098",
        security_protocol="SASL_SSL",
        sasl_mechanism="AWS_MSK_IAM",
        aws_region=REGION,
    )
    options = kafka_options(settings)
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    provider = options["sasl_oauth_token_provider"]
    assert isinstance(provider, AbstractTokenProvider)
    assert isinstance(await provider.token(), str)
    # aiokafka accepts the combination (it validates it in the constructor).
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **options)
    await producer.stop()


def test_kafka_tls_only() -> None:
    options = kafka_options(KafkaSettings(security_protocol="SSL"))
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    assert options["ssl_context"].check_hostname is True


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_ssl_modes() -> None:
    assert ssl_option(DbSettings()) is None  # the DSN decides
    assert ssl_option(DbSettings(ssl_mode="require")) == "require"
    full = ssl_option(DbSettings(ssl_mode="verify-full"))
    assert isinstance(full, ssl.SSLContext)
    assert full.check_hostname is True
    assert full.verify_mode == ssl.CERT_REQUIRED
    ca_only = ssl_option(DbSettings(ssl_mode="verify-ca"))
    assert isinstance(ca_only, ssl.SSLContext)
    assert ca_only.check_hostname is False
    assert ca_only.verify_mode == ssl.CERT_REQUIRED


async def test_postgres_password_from_the_dsn_by_default() -> None:
    assert await connect_options("postgresql://qis:qis@127.0.0.1:5432/qis", DbSettings()) == {}


async def test_postgres_iam_token_per_connection(aws_env: None) -> None:
    db = DbSettings(auth="iam", ssl_mode="verify-full", aws_region=REGION)
    dsn = "postgresql://qis_app@writer.cluster-x.eu-west-1.rds.amazonaws.com:5432/qis"
    options = await connect_options(dsn, db)
    assert isinstance(options["ssl"], ssl.SSLContext)
    token = await options["password"]()
    assert token.startswith("writer.cluster-x.eu-west-1.rds.amazonaws.com:5432/?Action=connect")
    assert "DBUser=qis_app" in token
    # The pool and every single connection of the process share one token source.
    again = await connect_options(dsn, db)
    assert await again["password"]() is token
    with pytest.raises(ValueError, match="name the database user"):
        await connect_options("postgresql://writer.example:5432/qis", db)


async def test_postgres_secret_supplies_user_and_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetched: list[str] = []

    class FakeSecret:
        async def aget(self) -> aws_auth.Credentials:
            fetched.append("x")
            return aws_auth.Credentials("qis_admin", "from-secret")

    def shared(secret_id: str, region: str, refresh: float) -> FakeSecret:
        assert (secret_id, region, refresh) == ("arn:secret", REGION, 60.0)
        return FakeSecret()

    monkeypatch.setattr("app.adapters.postgres.pool.shared_secret", shared)
    db = DbSettings(auth="secrets_manager", password_secret_id="arn:secret", aws_region=REGION)
    options = await connect_options("postgresql://writer.example:5432/qis", db)
    assert options["user"] == "qis_admin"
    assert await options["password"]() == "from-secret"
    # A DSN that names its user keeps it.
    named = await connect_options("postgresql://app@writer.example:5432/qis", db)
    assert "user" not in named


# --------------------------------------------------------------------------- Redis


def test_redis_tls_and_auth() -> None:
    assert redis_options(RedisSettings()) == {}
    options = redis_options(
        RedisSettings(
            url="rediss://master.qis.cache.amazonaws.com:6379/0",
            ssl_ca_file="/etc/ca.pem",
            password="token",
        )
    )
    assert options == {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": "/etc/ca.pem",
        "password": "token",
    }


async def test_redis_auth_from_a_secret() -> None:
    class FakeSecret:
        def get(self) -> aws_auth.Credentials:
            return aws_auth.Credentials(None, "auth-token")

        async def aget(self) -> aws_auth.Credentials:
            return aws_auth.Credentials(None, "auth-token")

    provider = SecretCredentialProvider(FakeSecret(), "")  # type: ignore[arg-type]
    assert provider.get_credentials() == ("auth-token",)
    assert await provider.get_credentials_async() == ("auth-token",)
    with_user = SecretCredentialProvider(FakeSecret(), "qis-app")  # type: ignore[arg-type]
    assert await with_user.get_credentials_async() == ("qis-app", "auth-token")
    options = redis_options(RedisSettings(url="rediss://h:6379/0", password_secret_id="s"))
    assert isinstance(options["credential_provider"], SecretCredentialProvider)


async def test_redis_secret_failure_is_a_redis_error() -> None:
    # RedisCache turns Redis errors into "cache unavailable" (reads go to PostgreSQL): a
    # Secrets Manager outage while Redis reconnects must be one of them.
    class Unreachable:
        def get(self) -> aws_auth.Credentials:
            raise aws_auth.CredentialsError("Secrets Manager secret 's': EndpointConnectionError")

        async def aget(self) -> aws_auth.Credentials:
            return self.get()

    provider = SecretCredentialProvider(Unreachable(), "")  # type: ignore[arg-type]
    with pytest.raises(RedisError, match="EndpointConnectionError"):
        await provider.get_credentials_async()
    with pytest.raises(RedisError, match="EndpointConnectionError"):
        provider.get_credentials()


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QIS_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"}, "needs QIS_KAFKA__SASL_MECHANISM"),
        ({"QIS_KAFKA__SASL_MECHANISM": "AWS_MSK_IAM"}, "needs QIS_KAFKA__SECURITY_PROTOCOL"),
        (
            {
                "QIS_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
                "QIS_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            },
            "QIS_KAFKA__SASL_SECRET_ID",
        ),
        ({"QIS_DB__AUTH": "secrets_manager"}, "QIS_DB__PASSWORD_SECRET_ID"),
        ({"QIS_DB__AUTH": "iam"}, "IAM over TLS"),
        ({"QIS_DB__IAM_TOKEN_REFRESH_SECONDS": "900"}, "below 900"),
        ({"QIS_DB__SSL_ROOT_CERT": "/ca.pem", "QIS_DB__SSL_MODE": "require"}, "verify-full"),
        ({"QIS_REDIS__SSL_CA_FILE": "/ca.pem"}, "rediss://"),
        ({"QIS_REDIS__PASSWORD": "a", "QIS_REDIS__PASSWORD_SECRET_ID": "b"}, "exclude"),
        ({"QIS_KAFKA__SECURITY_PROTOCOL": "TLS"}, "security_protocol"),
    ],
)
def test_impossible_security_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_secrets_are_redacted_from_repr_and_dumps(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(
        {
            "QIS_DB__WRITER_DSN": "postgresql://qis:db-s3cret@writer.example:5432/qis",
            "QIS_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "QIS_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "QIS_KAFKA__SASL_USERNAME": "qis",
            "QIS_KAFKA__SASL_PASSWORD": "kafka-s3cret",
            "QIS_REDIS__URL": "rediss://:url-s3cret@cache.example:6379/0",
            "QIS_REDIS__PASSWORD": "redis-s3cret",
        }
    )
    with caplog.at_level(logging.INFO):
        logging.getLogger("qis.test").info("settings %r", settings)
        logging.getLogger("qis.test").info("dump", extra={"settings": redacted(settings)})
    shown = repr(settings) + caplog.text + repr(redacted(settings)) + str(settings.kafka)
    assert "s3cret" not in shown
    dump = redacted(settings)
    assert dump["db"]["writer_dsn"] == "postgresql://qis:***@writer.example:5432/qis"
    assert dump["kafka"]["sasl_password"] == "***"
    assert dump["kafka"]["sasl_username"] == "qis"
    assert dump["redis"]["url"] == "rediss://:***@cache.example:6379/0"
    # The values themselves are intact for the clients.
    assert settings.kafka.sasl_password == "kafka-s3cret"


def test_botocore_never_logs_at_debug() -> None:
    # Signatures and response bodies (secret values) are botocore DEBUG records.
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.DEBUG)
    try:
        assert logging.getLogger("botocore.auth").getEffectiveLevel() == logging.INFO
        assert logging.getLogger("botocore.parsers").getEffectiveLevel() == logging.INFO
    finally:
        root.setLevel(before)
