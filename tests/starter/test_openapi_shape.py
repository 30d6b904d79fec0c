"""The HTTP service's contract does not drift: every path, method, documented status and content type, as saved.

The snapshot (openapi_shape.json) was taken from the app before it was split into routers; descriptions may
change, the shape may not. After a deliberate change of the API, regenerate it with
`PYTHONPATH=. python tests/starter/test_openapi_shape.py` and review the diff.
"""

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

SNAPSHOT = Path(__file__).with_name("openapi_shape.json")
SECRET = "a-production-secret-of-at-least-32-bytes!"
#: The app as tests build it (demo mode), and with the default non-demo settings (no /docs, /redoc).
VARIANTS: dict[str, dict[str, Any]] = {
    "demo": {"demo": True},
    "production": {"demo": False, "secret_key": SECRET, "api_keys": ["a-production-api-key"]},
}


def _content(part: dict[str, Any]) -> dict[str, str | None]:
    """Content type -> the schema's $ref (None for an inline schema)."""
    return {kind: (body.get("schema") or {}).get("$ref") for kind, body in sorted(part.get("content", {}).items())}


def _operation(op: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": op.get("operationId"),
        "tags": op.get("tags", []),
        "parameters": sorted([p["in"], p["name"], bool(p.get("required"))] for p in op.get("parameters", [])),
        "requestBody": _content(op["requestBody"]) if "requestBody" in op else None,
        "responses": {
            status: {"content": _content(answer), "headers": sorted(answer.get("headers", {}))}
            for status, answer in sorted(op.get("responses", {}).items())
        },
    }


def _routes(routes: list[Any], prefix: str = "") -> list[list[Any]]:
    """[path, methods, documented] of every route, routers included (FastAPI may keep an included router whole)."""
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += _routes(included.routes, prefix + route.include_context.prefix)
        elif isinstance(route, (APIRoute, Route)):
            found.append([prefix + route.path, sorted(route.methods or ()), getattr(route, "include_in_schema", True)])
    return found


def shape(app: FastAPI) -> dict[str, Any]:
    """The contract's shape: the OpenAPI operations, the schema names, and every route (documented or not)."""
    spec = app.openapi()
    return {
        "openapi": {
            path: {method: _operation(op) for method, op in sorted(ops.items())}
            for path, ops in sorted(spec["paths"].items())
        },
        "schemas": sorted(spec.get("components", {}).get("schemas", {})),
        "routes": sorted(_routes(app.routes)),
    }


def build(variant: str, tmp_path: Path) -> FastAPI:
    """The app as the tests build it (tests/conftest.py's make_settings), in the given variant."""
    from leadloop.infra.settings import Settings
    from starter.api import create_app

    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}",
        "state_dir": tmp_path / "state",
        "rate_limit_per_minute": 0,
    }
    settings = Settings(_env_file=None, **{**values, **VARIANTS[variant]})  # type: ignore[call-arg]
    return create_app(settings, client=object())  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_api_keeps_its_paths_methods_and_status_codes(variant: str, tmp_path: Path) -> None:
    saved = json.loads(SNAPSHOT.read_text(encoding="utf-8"))[variant]
    live = json.loads(json.dumps(shape(build(variant, tmp_path))))
    assert live["routes"] == saved["routes"]
    assert sorted(live["openapi"]) == sorted(saved["openapi"])
    for path, ops in saved["openapi"].items():
        assert live["openapi"][path] == ops, path
    assert live["schemas"] == saved["schemas"]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        snapshot = {variant: shape(build(variant, Path(tmp))) for variant in sorted(VARIANTS)}
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {SNAPSHOT}\n")
