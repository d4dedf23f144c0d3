"""What every boto3 client of the service shares: the endpoint and static credentials a
settings section gives (the stack's moto server locally; none in AWS, where the pod's
IAM role and the region's default endpoint apply), and reading a ClientError's code."""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import ClientError


class AwsEndpoint(Protocol):
    """The fields the lake, Timestream and EventBridge settings have in common."""

    @property
    def endpoint_url(self) -> str: ...

    @property
    def access_key_id(self) -> str: ...

    @property
    def secret_access_key(self) -> str: ...


def endpoint_options(settings: AwsEndpoint) -> dict[str, Any]:
    """`boto3.client` keyword arguments: the endpoint when one is set, the static
    credentials when an access key is set (the default credential chain otherwise)."""
    options: dict[str, Any] = {}
    if settings.endpoint_url:
        options["endpoint_url"] = settings.endpoint_url
    if settings.access_key_id:
        options["aws_access_key_id"] = settings.access_key_id
        options["aws_secret_access_key"] = settings.secret_access_key
    return options


def error_code(exc: ClientError) -> str:
    """The service's error code (`NoSuchKey`, `ThrottlingException`, ...), or ""."""
    return str(exc.response.get("Error", {}).get("Code", ""))
