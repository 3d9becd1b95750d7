"""The OpenAPI document of the API, with real request-body schemas.

The routes read raw bodies (to accept gzip, text/plain and per-event errors), so
FastAPI cannot infer their bodies; the schemas here are built from the one event
model plus the rules its validator enforces, so that clients and fuzzers
(schemathesis) see what is really accepted.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from clickstream.events import IncomingEvent

_NON_EMPTY = {"type": "string", "minLength": 1, "maxLength": 200}
_REQUIRED_BY_TYPE = {"track": ["event"], "group": ["groupId"], "alias": ["previousId", "userId"]}


def call_schema(call_type: str | None) -> dict[str, Any]:
    """The body of one call; ``call_type`` None is a call inside a batch, which names its own type."""
    schema = copy.deepcopy(IncomingEvent.model_json_schema(by_alias=True))
    schema.pop("title", None)
    schema["properties"].pop("writeKey", None)
    for name in ("timestamp", "sentAt"):
        schema["properties"][name] = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}
    # Every call belongs to someone.
    schema["anyOf"] = [
        {"required": ["userId"], "properties": {"userId": _NON_EMPTY}},
        {"required": ["anonymousId"], "properties": {"anonymousId": _NON_EMPTY}},
    ]
    if call_type is None:
        schema["required"] = ["type"]
        schema["allOf"] = [
            {"if": {"properties": {"type": {"const": t}}, "required": ["type"]},
             "then": {"required": fields, "properties": {f: _NON_EMPTY for f in fields}}}
            for t, fields in _REQUIRED_BY_TYPE.items()
        ]
    else:
        # The endpoint sets the type; a "type" in the body is ignored.
        schema["properties"].pop("type")
        schema.pop("required", None)
        fields = _REQUIRED_BY_TYPE.get(call_type, [])
        if fields:
            schema["required"] = fields
            schema["properties"].update({f: _NON_EMPTY for f in fields})
    return schema


def batch_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {"type": "array", "minItems": 1, "items": call_schema(None)},
            "sentAt": {"type": "string", "format": "date-time"},
        },
    }


def install_openapi(app: FastAPI, call_types: list[str], batch_path: str) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version="1", description=app.description, routes=app.routes)
            for call_type in call_types:
                _set_body(document, f"/v1/{call_type}", call_schema(call_type))
            _set_body(document, batch_path, batch_schema())
            document.setdefault("components", {})["securitySchemes"] = {
                "writeKey": {"type": "http", "scheme": "basic", "description": "the write key as user name"}
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi


def _set_body(document: dict[str, Any], path: str, schema: dict[str, Any]) -> None:
    operation = document["paths"][path]["post"]
    operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    operation["security"] = [{"writeKey": []}]
    operation.setdefault("responses", {}).update({
        "200": {"description": "accepted: Kafka acknowledged every event"},
        "400": {"description": "invalid event(s), with the reason"},
        "401": {"description": "missing or unknown write key"},
        "413": {"description": "over 32 KB per event or 500 KB per request"},
        "415": {"description": "unsupported content type or encoding"},
        "429": {"description": "rate limit exceeded; see Retry-After"},
        "503": {"description": "the event stream is unavailable; nothing was kept, retry after Retry-After"},
    })
