"""AWS-issued credentials for the clients: Secrets Manager secrets and short-lived IAM
tokens (RDS IAM authentication, MSK IAM over SASL/OAUTHBEARER).

Each holder caches what it got and fetches again before it goes stale, from a worker
thread (boto3 is blocking; signing can refresh the pod's web-identity credentials over
the network). Nothing here logs a secret or a token, and no holder shows one in repr().
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from aiokafka.abc import AbstractTokenProvider
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError

Clock = Callable[[], float]

# At DEBUG botocore logs request signatures (the secret part of a token) and response
# bodies (a secret's value): it stays at INFO even when the service logs at DEBUG.
for _name in ("botocore", "boto3"):
    logging.getLogger(_name).setLevel(logging.INFO)

# RDS IAM tokens are valid for 15 minutes; MSK's signer makes them valid for 15 too.
RDS_TOKEN_LIFETIME_SECONDS = 900.0


class CredentialsError(RuntimeError):
    """A secret or token could not be obtained; the message names it, never its value."""


class Credentials:
    """A user name (if the secret names one) and a password; repr() hides the password."""

    __slots__ = ("password", "username")

    def __init__(self, username: str | None, password: str) -> None:
        self.username = username
        self.password = password

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and (self.username, self.password) == (
            other.username,
            other.password,
        )

    def __hash__(self) -> int:
        return hash((self.username, self.password))


def parse_secret(text: str) -> Credentials:
    """A secret's string: JSON with "password" (and "username"), as Aurora's managed master
    secret and MSK's SCRAM secrets are, or else the bare password (an AUTH token)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        password = value.get("password")
        if not isinstance(password, str) or not password:
            raise CredentialsError('the secret is JSON without a "password" string')
        username = value.get("username")
        return Credentials(username if isinstance(username, str) and username else None, password)
    if not text:
        raise CredentialsError("the secret is empty")
    return Credentials(None, text)


def _region(region: str) -> str | None:
    return region or None


class SecretsManagerSecret:
    """One Secrets Manager secret, read again once it is older than `refresh_seconds` (so
    a rotated password is picked up by the next connections)."""

    def __init__(
        self,
        secret_id: str,
        region: str = "",
        refresh_seconds: float = 60.0,
        *,
        client: Any = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.secret_id = secret_id
        self._region = region
        self._refresh = refresh_seconds
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._value: Credentials | None = None
        self._fetched_at = 0.0
        self.fetches = 0

    def __repr__(self) -> str:
        return f"SecretsManagerSecret({self.secret_id!r})"

    def _fresh(self) -> Credentials | None:
        value = self._value
        if value is not None and self._clock() - self._fetched_at < self._refresh:
            return value
        return None

    def get(self) -> Credentials:
        """The credentials, from the cache or (blocking) from Secrets Manager."""
        with self._lock:
            value = self._fresh()
            if value is not None:
                return value
            if self._client is None:
                self._client = boto3.client("secretsmanager", region_name=_region(self._region))
            try:
                reply = self._client.get_secret_value(SecretId=self.secret_id)
            except (ClientError, BotoCoreError) as exc:
                raise CredentialsError(
                    f"Secrets Manager secret {self.secret_id!r}: {_error_name(exc)}"
                ) from None
            text = reply.get("SecretString")
            if not isinstance(text, str):
                raise CredentialsError(f"secret {self.secret_id!r} has no SecretString")
            try:
                self._value = parse_secret(text)
            except CredentialsError as exc:
                raise CredentialsError(f"secret {self.secret_id!r}: {exc}") from None
            self._fetched_at = self._clock()
            self.fetches += 1
            return self._value

    async def aget(self) -> Credentials:
        """`get()` without blocking the event loop when Secrets Manager must be asked."""
        value = self._fresh()
        return value if value is not None else await asyncio.to_thread(self.get)


class RdsAuthToken:
    """RDS IAM authentication tokens for one endpoint and user.

    A token is valid for 15 minutes and only at connection time, so each new connection
    asks for one; the token is remade once it is `refresh_seconds` old (default 600 s,
    five minutes before it would expire), never handed out stale.
    """

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        region: str = "",
        refresh_seconds: float = 600.0,
        *,
        client: Any = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 0 < refresh_seconds < RDS_TOKEN_LIFETIME_SECONDS:
            raise ValueError(f"refresh_seconds must be in (0, {RDS_TOKEN_LIFETIME_SECONDS:.0f})")
        self.host, self.port, self.user = host, port, user
        self._region = region
        self._refresh = refresh_seconds
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._made_at = 0.0
        self.generated = 0

    def __repr__(self) -> str:
        return f"RdsAuthToken({self.user!r}@{self.host}:{self.port})"

    def _fresh(self) -> str | None:
        token = self._token
        if token is not None and self._clock() - self._made_at < self._refresh:
            return token
        return None

    def get(self) -> str:
        with self._lock:
            token = self._fresh()
            if token is not None:
                return token
            if self._client is None:
                self._client = boto3.client("rds", region_name=_region(self._region))
            try:
                token = self._client.generate_db_auth_token(
                    DBHostname=self.host, Port=self.port, DBUsername=self.user
                )
            except (ClientError, BotoCoreError) as exc:
                raise CredentialsError(
                    f"RDS IAM token for {self.user}@{self.host}: {_error_name(exc)}"
                ) from None
            assert isinstance(token, str)
            self._token, self._made_at = token, self._clock()
            self.generated += 1
            return token

    async def aget(self) -> str:
        token = self._fresh()
        return token if token is not None else await asyncio.to_thread(self.get)


Signer = Callable[[str], tuple[str, int]]


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """SASL/OAUTHBEARER tokens for MSK IAM authentication (aiokafka asks at each broker
    connection). Signed by AWS's `aws-msk-iam-sasl-signer` with the default credential
    chain (the pod's IRSA role); reused until `margin_seconds` before their expiry."""

    def __init__(
        self,
        region: str,
        *,
        sign: Signer = MSKAuthTokenProvider.generate_auth_token,
        clock: Clock = time.time,
        margin_seconds: float = 60.0,
    ) -> None:
        if not region:
            region = boto3.session.Session().region_name or ""
        if not region:
            raise CredentialsError(
                "MSK IAM needs a region: set QIS_KAFKA__AWS_REGION or AWS_REGION"
            )
        self.region = region
        self._sign = sign
        self._clock = clock
        self._margin_ms = margin_seconds * 1000
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expiry_ms = 0.0
        self.generated = 0

    def __repr__(self) -> str:
        return f"MskIamTokenProvider({self.region!r})"

    def _fresh(self) -> str | None:
        token = self._token
        if token is not None and self._clock() * 1000 < self._expiry_ms - self._margin_ms:
            return token
        return None

    def _get(self) -> str:
        with self._lock:
            token = self._fresh()
            if token is not None:
                return token
            try:
                token, expiry_ms = self._sign(self.region)
            except (ClientError, BotoCoreError) as exc:
                raise CredentialsError(f"MSK IAM token: {_error_name(exc)}") from None
            except (ValueError, AttributeError):  # the signer's "no credentials" cases
                raise CredentialsError(
                    "MSK IAM token: no AWS credentials (IRSA role, instance profile or AWS_*)"
                ) from None
            self._token, self._expiry_ms = token, float(expiry_ms)
            self.generated += 1
            return token

    async def token(self) -> str:
        token = self._fresh()
        return token if token is not None else await asyncio.to_thread(self._get)


def _error_name(exc: Exception) -> str:
    """What went wrong, from the SDK's error code or class: no request or reply content."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".rstrip(": ")
    return type(exc).__name__


_secrets: dict[tuple[str, str, float], SecretsManagerSecret] = {}
_rds_tokens: dict[tuple[str, int, str, str, float], RdsAuthToken] = {}
_registry_lock = threading.Lock()


def shared_secret(
    secret_id: str, region: str = "", refresh_seconds: float = 60.0
) -> SecretsManagerSecret:
    """The process's one holder of this secret (pools, listeners and clients share it)."""
    key = (secret_id, region, refresh_seconds)
    with _registry_lock:
        holder = _secrets.get(key)
        if holder is None:
            holder = _secrets[key] = SecretsManagerSecret(secret_id, region, refresh_seconds)
        return holder


def shared_rds_token(
    host: str, port: int, user: str, region: str = "", refresh_seconds: float = 600.0
) -> RdsAuthToken:
    """The process's one token source for this endpoint and user."""
    key = (host, port, user, region, refresh_seconds)
    with _registry_lock:
        holder = _rds_tokens.get(key)
        if holder is None:
            holder = _rds_tokens[key] = RdsAuthToken(host, port, user, region, refresh_seconds)
        return holder
