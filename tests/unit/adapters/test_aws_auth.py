"""Secrets and short-lived IAM tokens: cached, renewed before they go stale, never shown.

Everything here runs offline: Secrets Manager answers through botocore's Stubber, RDS
and MSK tokens are signed locally (SigV4 presigning) with fake credentials, and a fake
clock stands in for the passing of time.
"""

from __future__ import annotations

import base64
import logging
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.stub import Stubber

from app.adapters.aws_auth import (
    Credentials,
    CredentialsError,
    MskIamTokenProvider,
    RdsAuthToken,
    SecretsManagerSecret,
    parse_secret,
)

REGION = "eu-west-1"


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake static credentials and a region: signing works, nothing leaves the machine."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return


# --------------------------------------------------------------------------- secrets


def test_parse_secret_forms() -> None:
    assert parse_secret('{"username": "qis_admin", "password": "p@ss", "engine": "postgres"}') == (
        Credentials("qis_admin", "p@ss")
    )
    assert parse_secret('{"password": "only"}') == Credentials(None, "only")
    assert parse_secret("bare-auth-token") == Credentials(None, "bare-auth-token")
    with pytest.raises(CredentialsError, match='without a "password"'):
        parse_secret('{"username": "qis"}')
    with pytest.raises(CredentialsError, match="empty"):
        parse_secret("")
    assert "p@ss" not in repr(Credentials("qis_admin", "p@ss"))


def _stubbed_secret(
    clock: FakeClock, refresh: float = 60.0
) -> tuple[SecretsManagerSecret, Stubber]:
    client = boto3.client(
        "secretsmanager",
        region_name=REGION,
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    stubber = Stubber(client)
    secret = SecretsManagerSecret("qis/db", REGION, refresh, client=client, clock=clock)
    return secret, stubber


def _reply(value: str) -> dict[str, str]:
    return {
        "ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:qis/db",
        "Name": "qis/db",
        "SecretString": value,
    }


async def test_secret_is_cached_then_read_again_after_rotation() -> None:
    clock = FakeClock()
    secret, stubber = _stubbed_secret(clock, refresh=60.0)
    stubber.add_response(
        "get_secret_value", _reply('{"username": "u", "password": "one"}'), {"SecretId": "qis/db"}
    )
    stubber.add_response(
        "get_secret_value", _reply('{"username": "u", "password": "two"}'), {"SecretId": "qis/db"}
    )
    with stubber:
        assert (await secret.aget()).password == "one"
        clock.now += 59.0
        assert secret.get().password == "one"  # still fresh: no second call
        assert secret.fetches == 1
        clock.now += 1.0
        assert (await secret.aget()).password == "two"  # rotated value reaches new connections
        assert secret.fetches == 2
        stubber.assert_no_pending_responses()


def test_secret_errors_name_the_secret_never_its_value(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    secret, stubber = _stubbed_secret(clock)
    stubber.add_client_error(
        "get_secret_value", service_error_code="AccessDeniedException", service_message="denied"
    )
    stubber.add_response("get_secret_value", _reply('{"user": "no password here-s3cr3t"}'))
    with stubber, caplog.at_level(logging.DEBUG):
        with pytest.raises(CredentialsError, match="'qis/db': AccessDeniedException: denied"):
            secret.get()
        with pytest.raises(CredentialsError, match="'qis/db'") as bad:
            secret.get()
    assert "s3cr3t" not in str(bad.value)
    assert "s3cr3t" not in caplog.text
    assert "qis/db" in repr(secret)


# --------------------------------------------------------------------------- RDS IAM


def test_rds_token_is_renewed_before_it_expires(aws_env: None) -> None:
    clock = FakeClock()
    source = RdsAuthToken(
        "writer.cluster-x.eu-west-1.rds.amazonaws.com",
        5432,
        "qis_app",
        REGION,
        refresh_seconds=600.0,
        clock=clock,
    )
    first = source.get()
    url = urlsplit("https://" + first)
    query = parse_qs(url.query)
    assert url.hostname == "writer.cluster-x.eu-west-1.rds.amazonaws.com"
    assert url.port == 5432
    assert query["Action"] == ["connect"]
    assert query["DBUser"] == ["qis_app"]
    assert query["X-Amz-Expires"] == ["900"]  # valid 15 minutes
    assert "/eu-west-1/rds-db/" in query["X-Amz-Credential"][0]

    clock.now += 599.0
    assert source.get() is first  # reused while it has more than 5 minutes left
    assert source.generated == 1
    clock.now += 1.0
    second = source.get()  # 600 s old: made again, 300 s before the old one expires
    assert source.generated == 2
    assert parse_qs(urlsplit("https://" + second).query)["DBUser"] == ["qis_app"]
    assert first not in repr(source)
    assert second not in repr(source)


async def test_rds_token_async_and_bounds(aws_env: None) -> None:
    clock = FakeClock()
    source = RdsAuthToken("h", 5432, "u", REGION, refresh_seconds=300.0, clock=clock)
    assert await source.aget() == source.get()
    assert source.generated == 1
    with pytest.raises(ValueError, match="refresh_seconds"):
        RdsAuthToken("h", 5432, "u", REGION, refresh_seconds=900.0)


# --------------------------------------------------------------------------- MSK IAM


async def test_msk_token_is_reused_until_shortly_before_expiry() -> None:
    clock = FakeClock(now=1_000.0)
    signed: list[str] = []

    def sign(region: str) -> tuple[str, int]:
        signed.append(region)
        return f"token-{len(signed)}", int((clock.now + 900) * 1000)

    provider = MskIamTokenProvider(REGION, sign=sign, clock=clock, margin_seconds=60.0)
    assert await provider.token() == "token-1"
    clock.now += 839.0  # 61 s left
    assert await provider.token() == "token-1"
    clock.now += 1.0  # 60 s left: within the margin, a new one
    assert await provider.token() == "token-2"
    assert signed == [REGION, REGION]
    assert "token" not in repr(provider).replace("TokenProvider", "")


async def test_msk_token_from_aws_signer(aws_env: None, caplog: pytest.LogCaptureFixture) -> None:
    provider = MskIamTokenProvider(REGION)
    with caplog.at_level(logging.DEBUG):
        token = await provider.token()
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.hostname == f"kafka.{REGION}.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Expires"] == ["900"]
    assert token not in caplog.text
    assert query["X-Amz-Signature"][0] not in caplog.text
    assert await provider.token() is token


def test_msk_provider_needs_a_region_and_credentials(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(CredentialsError, match="QIS_KAFKA__AWS_REGION"):
        MskIamTokenProvider("")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = MskIamTokenProvider(REGION)
    with pytest.raises(CredentialsError, match="no AWS credentials"):
        provider._get()
