"""The production app plus benchmark-only ceiling routes, served like `qis api`.

`POST /bench/decode` decodes the ingestion body with the same decoder and answers 202
without producing: the ceiling of the ingestion route. `GET /bench/bare` is the bare
framework GET route. Neither exists in the production app.
"""

from __future__ import annotations

import os
import sys

import uvicorn
from litestar import Request, Response, get, post

from app.api.routes.observations import decode_submission
from app.entrypoints.api import create_app
from app.settings import load_settings
from app.telemetry.logging import configure_logging
from app.telemetry.setup import setup_telemetry


@post("/bench/decode", status_code=202, request_max_body_size=2 * 1024 * 1024)
async def bench_decode(request: Request) -> Response[dict[str, int]]:  # type: ignore[type-arg]
    submission = decode_submission(await request.body())
    return Response({"accepted": len(submission.observations)}, status_code=202)


@get("/bench/bare", sync_to_thread=False)
def bench_bare() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    settings = load_settings(os.environ)
    configure_logging(settings.telemetry.log_level)
    telemetry = setup_telemetry(settings.telemetry, "api")
    app = create_app(settings, telemetry)
    app.register(bench_decode)
    app.register(bench_bare)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
