"""Write or check the committed OpenAPI document (`openapi.json` at the repository root)
and the descriptor's JSON schema (`docs/descriptor.schema.json`).

`.venv/bin/python -m app.entrypoints.openapi_export [--check]`. The files are the contract:
the document the api serves at `/schema/openapi.json` and the schema a descriptor
document is validated against, pretty-printed with sorted keys so a change reads as a
diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec
from litestar.serialization import encode_json

from app.domain import descriptor
from app.entrypoints.api import create_app
from app.settings import load_settings

COMMAND = ".venv/bin/python -m app.entrypoints.openapi_export"
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "openapi.json"
DESCRIPTOR_SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "descriptor.schema.json"


def document() -> dict[str, Any]:
    """The OpenAPI document of the application, as JSON values."""
    app = create_app(load_settings({}))
    decoded: dict[str, Any] = msgspec.json.decode(encode_json(app.openapi_schema.to_schema()))
    return decoded


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    files = {args.path: render(document()), DESCRIPTOR_SCHEMA_PATH: render(descriptor.schema())}
    if args.check:
        stale = [p for p, text in files.items() if (p.read_text() if p.exists() else "") != text]
        for path in stale:
            sys.stderr.write(f"{path} is stale; regenerate with {COMMAND}\n")
        return 1 if stale else 0
    for path, text in files.items():
        path.write_text(text)
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
