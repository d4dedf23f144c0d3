"""The series descriptor: `PUT`/`GET /v1/reference-data/{id}/descriptor` (docs/descriptors.md).

- They follow the configuration routes (`reference_data.py`): `PUT` decodes the body
  itself (one msgspec decoder, unknown fields refused: 422 with the field's `loc`) and
  needs `qis/admin`; `GET` needs `qis/read` and answers from the query cache as bytes.
- With descriptors disabled (`QIS_DOCUMENTS__ENABLED=false`) both answer 404 with a
  detail saying so: the resource does not exist on this deployment and no retry will
  change that (a 503 would invite retries).
- A document store that does not answer raises `DescriptorStoreUnavailable`, which the
  application answers with 503 and Retry-After like any store (`adapters/failures.py`).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.types import ASGIApp

from app.api import examples
from app.api.auth import ADMIN, READ, principal_of, requires
from app.api.openapi import ok, problems
from app.api.problems import NOT_JSON, ApiProblem, item_from_msgspec, items_from_domain
from app.api.routes.query import JsonBody
from app.api.routes.reference_data import SeriesId, json_body, valid_id
from app.domain.bounds import is_valid_series_id
from app.domain.descriptor import MAX_DESCRIPTOR_BYTES, Descriptor, StoredDescriptor
from app.services.cache import ABSENT
from app.services.descriptors import (
    DescriptorConflict,
    Descriptors,
    InvalidDescriptor,
    UnknownSeries,
)

DISABLED = "descriptor documents are not enabled on this deployment"
_descriptor = msgspec.json.Decoder(Descriptor)


def decode_descriptor(body: bytes) -> Descriptor:
    """Decode and validate a descriptor; 400 for non-JSON, 422 listing invalid fields."""
    try:
        return _descriptor.decode(body)
    except msgspec.ValidationError as exc:
        item = item_from_msgspec(exc, [])
        raise ApiProblem(422, "invalid descriptor", errors=[item]) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, f"{NOT_JSON}: {exc}") from None


def _available(descriptors: Descriptors | None) -> Descriptors:
    if descriptors is None:
        raise ApiProblem(404, DISABLED)
    return descriptors


class DescriptorRoutes(Controller):
    """The descriptor of a series, under the series' path."""

    path = "/v1/reference-data"

    @put(
        "/{reference_data_id:str}/descriptor",
        status_code=200,
        request_max_body_size=MAX_DESCRIPTOR_BYTES,
        tags=["reference-data"],
        operation_id="putDescriptor",
        **requires(ADMIN),
        responses={
            200: ok(
                StoredDescriptor,
                "the stored descriptor, with its revision",
                "ETH-USD",
                examples.STORED_DESCRIPTOR,
            ),
            **problems(
                s400="body is not JSON",
                s404="unknown series, or descriptors disabled on this deployment",
                s409="the stored descriptor changed meanwhile; read it and retry",
                s413="body above 64 KiB",
                s415="media type is not application/json",
                s422="invalid id or descriptor, each invalid field listed",
            ),
        },
    )
    async def put_descriptor(
        self,
        request: Request[Any, Any, Any],
        reference_data_id: SeriesId,
        descriptors: NamedDependency[Descriptors | None],
    ) -> StoredDescriptor:
        """Create or replace the descriptor document of a series; every change is audited."""
        service = _available(descriptors)
        json_body(request)
        valid_id(reference_data_id)
        descriptor = decode_descriptor(await request.body())
        try:
            return await service.put(
                reference_data_id, descriptor, actor=principal_of(request).actor
            )
        except InvalidDescriptor as exc:
            raise ApiProblem(
                422, "invalid descriptor", errors=items_from_domain(exc.errors, [])
            ) from None
        except UnknownSeries:
            raise ApiProblem(
                404, f"no series {reference_data_id!r}: configure it first (PUT its id)"
            ) from None
        except DescriptorConflict:
            raise ApiProblem(
                409, "the stored descriptor changed meanwhile; read it and retry"
            ) from None

    @get(
        "/{reference_data_id:str}/descriptor",
        tags=["reference-data"],
        operation_id="getDescriptor",
        **requires(READ),
        responses={
            200: ok(
                StoredDescriptor,
                "the descriptor, with its revision",
                "ETH-USD",
                examples.STORED_DESCRIPTOR,
            ),
            **problems(
                s400="invalid parameter",
                s404="unknown series, a series without descriptor, or descriptors disabled",
            ),
        },
    )
    async def get_descriptor(
        self,
        reference_data_id: SeriesId,
        descriptors: NamedDependency[Descriptors | None],
    ) -> ASGIApp:
        """The descriptor document of a series (cached like the other reads)."""
        service = _available(descriptors)
        if not is_valid_series_id(reference_data_id):
            raise ApiProblem(404, f"no descriptor of {reference_data_id!r}")
        body = await service.get(reference_data_id)
        if body == ABSENT:
            raise ApiProblem(404, f"no descriptor of {reference_data_id!r}")
        return JsonBody(body)


ROUTES = [DescriptorRoutes]
