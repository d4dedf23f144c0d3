"""Series configuration: `PUT`/`GET /v1/reference-data/{id}` and the paginated list.

(The official-value routes, with their cache, are in `query.py`.)

- `PUT` decodes the body itself (one msgspec decoder, unknown fields rejected) so every
  invalid field is a 422 with its `loc`, like ingestion; it writes through the writer
  pool. The `GET`s read the reader pool.
- The list is keyset-paginated on the id: `next_cursor` is the last id, base64url
  encoded (opaque to clients), so pages stay stable while series are added.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import PathParameter, QueryParameter

from app.api import examples
from app.api.auth import ADMIN, READ, principal_of, requires
from app.api.openapi import ok, problems
from app.api.problems import (
    NOT_JSON,
    ApiProblem,
    ProblemItem,
    item_from_msgspec,
    items_from_domain,
)
from app.api.routes.query import CURSOR_PATTERN
from app.domain.bounds import SERIES_ID_PATTERN, is_valid_series_id
from app.domain.errors import InvalidSeriesConfig
from app.domain.series import Series, SeriesConfig
from app.ports import PipelineDatabase, ReferenceDataReader
from app.services.series import configure_series

MAX_CONFIG_BYTES = 64 * 1024
SeriesId = Annotated[
    str,
    PathParameter(
        description=f"series id, matching {SERIES_ID_PATTERN}",
        schema_extra={"pattern": SERIES_ID_PATTERN},
        examples=[Example(summary="a price", value=examples.SERIES)],
    ),
]
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

_config = msgspec.json.Decoder(SeriesConfig)


class SeriesPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of series, ordered by id; pass `next_cursor` back for the next (null: last)."""

    items: list[Series]
    next_cursor: str | None


def decode_config(body: bytes) -> SeriesConfig:
    """Decode and validate a configuration; 400 for non-JSON, 422 listing invalid fields."""
    try:
        config = _config.decode(body)
    except msgspec.ValidationError as exc:
        # JSON Schema counts 60.0 as an integer: accept integral floats in integer fields.
        try:
            return msgspec.convert(_integral(msgspec.json.decode(body)), SeriesConfig)
        except msgspec.ValidationError:
            pass
        item = item_from_msgspec(exc, [])
        raise ApiProblem(422, "invalid series configuration", errors=[item]) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, f"{NOT_JSON}: {exc}") from None
    return config


def valid_id(reference_data_id: str) -> str:
    if not is_valid_series_id(reference_data_id):
        raise ApiProblem(
            422,
            "invalid series id",
            errors=[
                ProblemItem(
                    loc=["path", "reference_data_id"],
                    msg=f"must match {SERIES_ID_PATTERN}",
                )
            ],
        )
    return reference_data_id


def _integral(node: Any) -> Any:
    """`node` with every float that is an exact integer (at most 2**53) as an int."""
    if isinstance(node, float):
        return int(node) if node.is_integer() and abs(node) <= 2**53 else node
    if isinstance(node, list):
        return [_integral(item) for item in node]
    if isinstance(node, dict):
        return {key: _integral(item) for key, item in node.items()}
    return node


def json_body(request: Request[Any, Any, Any]) -> None:
    media_type, _ = request.content_type
    if media_type != "application/json":
        raise ApiProblem(415, f"expected application/json, got {media_type or 'nothing'}")


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        last_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        last_id = ""
    if not is_valid_series_id(last_id):
        raise ApiProblem(
            400,
            "cursor is not one this API returned",
            errors=[ProblemItem(loc=["query", "cursor"], msg="invalid cursor")],
        )
    return last_id


class ReferenceDataRoutes(Controller):
    """The series configuration routes, under one path prefix."""

    path = "/v1/reference-data"

    @put(
        "/{reference_data_id:str}",
        status_code=200,
        request_max_body_size=MAX_CONFIG_BYTES,
        tags=["reference-data"],
        operation_id="putSeries",
        **requires(ADMIN),
        responses={
            200: ok(Series, "the stored configuration", "ETH-USD", examples.SERIES_EXAMPLE),
            **problems(
                s400="body is not JSON",
                s413="body above 64 KiB",
                s415="media type is not application/json",
                s422="invalid id or configuration, each invalid field listed",
            ),
        },
    )
    async def put_series(
        self,
        request: Request[Any, Any, Any],
        reference_data_id: SeriesId,
        pipeline_db: NamedDependency[PipelineDatabase],
    ) -> Series:
        """Create or replace a series configuration; every change is audited."""
        json_body(request)
        valid_id(reference_data_id)
        config = decode_config(await request.body())
        try:
            return await configure_series(
                pipeline_db, reference_data_id, config, actor=principal_of(request).actor
            )
        except InvalidSeriesConfig as exc:
            raise ApiProblem(
                422, "invalid series configuration", errors=items_from_domain(exc.errors, [])
            ) from None

    @get(
        "/{reference_data_id:str}",
        tags=["reference-data"],
        operation_id="getSeries",
        **requires(READ),
        responses={
            200: ok(Series, "the configuration", "ETH-USD", examples.SERIES_EXAMPLE),
            **problems(s400="invalid parameter", s404="unknown series (or an invalid id)"),
        },
    )
    async def get_series(
        self,
        reference_data_id: SeriesId,
        reference_data_reader: NamedDependency[ReferenceDataReader],
    ) -> Series:
        """One series configuration."""
        series = (
            await reference_data_reader.series(reference_data_id)
            if is_valid_series_id(reference_data_id)
            else None
        )
        if series is None:
            raise ApiProblem(404, f"no series {reference_data_id!r}")
        return series

    @get(
        "/",
        tags=["reference-data"],
        operation_id="listSeries",
        **requires(READ),
        responses={
            200: ok(SeriesPage, "one page of series", "the last page", examples.SERIES_PAGE),
            **problems(s400="invalid limit or cursor"),
        },
    )
    async def list_series(
        self,
        reference_data_reader: NamedDependency[ReferenceDataReader],
        limit: Annotated[
            int, QueryParameter(ge=1, le=MAX_LIMIT, description="page size, 1 to 1000")
        ] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None,
            QueryParameter(
                description="`next_cursor` of the previous page (opaque; one this api returned)",
                max_length=512,
                schema_extra={"pattern": CURSOR_PATTERN},
            ),
        ] = None,
    ) -> SeriesPage:
        """Series configurations ordered by id, cursor-paginated."""
        after = None if cursor is None else decode_cursor(cursor)
        page = await reference_data_reader.list_series(after, limit + 1)
        more = len(page) > limit
        items = page[:limit]
        return SeriesPage(
            items=items,
            next_cursor=encode_cursor(items[-1].reference_data_id) if more and items else None,
        )


ROUTES = [ReferenceDataRoutes]
