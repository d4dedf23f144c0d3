"""Typed Python client of the QIS Data Management HTTP API (sync and asyncio).

`QisClient` / `AsyncQisClient` for the calls, `qis_client.models` for the bodies,
`qis_client.errors` for the exceptions, `derive_observation_id` for the ids the server
gives observations.
"""

from qis_client._core import (
    MAX_BATCH,
    MAX_BODY_BYTES,
    NO_RETRY,
    Batch,
    IngestResult,
    RetryPolicy,
    batches,
)
from qis_client.aio import AsyncQisClient
from qis_client.auth import (
    AsyncTokenProvider,
    BearerAuth,
    Token,
    TokenProvider,
    client_credentials,
    static_token,
)
from qis_client.client import QisClient
from qis_client.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    QisConnectionError,
    QisError,
    QisProblem,
    RateLimited,
    ServerError,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    UnsupportedMediaType,
)
from qis_client.ids import derive_observation_id, observation_id
from qis_client.models import (
    Descriptor,
    HistoryItem,
    Observation,
    OfficialValue,
    QualityPolicy,
    QualitySummary,
    QualityWeights,
    Series,
    SeriesConfig,
    StoredDescriptor,
    SubmittedObservation,
)

__version__ = "0.1.0"
__all__ = [
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "NO_RETRY",
    "AsyncQisClient",
    "AsyncTokenProvider",
    "Batch",
    "BearerAuth",
    "Descriptor",
    "HistoryItem",
    "IngestResult",
    "InvalidRequest",
    "NotFound",
    "Observation",
    "OfficialValue",
    "PayloadTooLarge",
    "QisClient",
    "QisConnectionError",
    "QisError",
    "QisProblem",
    "QualityPolicy",
    "QualitySummary",
    "QualityWeights",
    "RateLimited",
    "RetryPolicy",
    "Series",
    "SeriesConfig",
    "ServerError",
    "StoredDescriptor",
    "SubmittedObservation",
    "Token",
    "TokenProvider",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "UnsupportedMediaType",
    "batches",
    "client_credentials",
    "derive_observation_id",
    "observation_id",
    "static_token",
]
