"""Reading a request body: size limits, gzip, content type and JSON, each failure a typed error.

Segment's limits: 32 KB per call, 500 KB per request. Browsers send ``text/plain``
(a CORS "simple request" with no preflight), so it is accepted as JSON too.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from pydantic_core import from_json

from ingest_api.errors import IngestError

MAX_EVENT_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
JSON_CONTENT_TYPES = {"application/json", "text/plain", ""}


class PayloadTooLarge(IngestError):
    status = 413


class UnsupportedMediaType(IngestError):
    status = 415


class MalformedBody(IngestError):
    status = 400


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def gunzip_limited(data: bytes, limit: int) -> bytes:
    """Inflate gzip data, refusing to produce more than ``limit`` bytes (no gzip bombs)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise MalformedBody(f"body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"request is over {limit // 1024} KB once decompressed; the limit is {limit // 1024} KB")
    if not inflater.eof:
        raise MalformedBody("gzip body is truncated")
    return out


def decode_body(raw: bytes, *, content_type: str | None, content_encoding: str | None, limit: int) -> Any:
    """The JSON value of a request body, within ``limit`` bytes (after decompression)."""
    if media_type(content_type) not in JSON_CONTENT_TYPES:
        raise UnsupportedMediaType(f"unsupported content type {media_type(content_type)!r}: send application/json")
    encoding = (content_encoding or "").strip().lower()
    if encoding == "gzip":
        raw = gunzip_limited(raw, limit)
    elif encoding not in ("", "identity"):
        raise UnsupportedMediaType(f"unsupported content encoding {encoding!r}: send gzip or none")
    if len(raw) > limit:
        raise PayloadTooLarge(f"request is {len(raw) // 1024} KB; the limit is {limit // 1024} KB")
    try:
        # pydantic's parser: 40% of json.loads's time, and the same values (integers of any size,
        # NaN and Infinity too). It reads only UTF-8 and refuses lone surrogates: json decides
        # those, and words the error of a malformed body.
        return from_json(raw, cache_strings=False)
    except ValueError:
        pass
    try:
        return json.loads(raw)
    except RecursionError:
        raise MalformedBody("malformed JSON: nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedBody(f"malformed JSON: {exc}") from None
