import gzip
import json
import math

import pytest

from ingest_api.body import MalformedBody, PayloadTooLarge, UnsupportedMediaType, decode_body, gunzip_limited


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "text/plain", None])
def test_json_and_text_plain_are_accepted(content_type):
    assert decode_body(b'{"a": 1}', content_type=content_type, content_encoding=None, limit=100) == {"a": 1}


def test_gzip_is_inflated():
    data = gzip.compress(b'{"batch": []}')
    assert decode_body(data, content_type="application/json", content_encoding="gzip", limit=100) == {"batch": []}


def test_gzip_bomb_is_stopped_at_the_limit():
    bomb = gzip.compress(b"[" + b"0," * 1_000_000 + b"0]")
    with pytest.raises(PayloadTooLarge):
        gunzip_limited(bomb, 500 * 1024)


@pytest.mark.parametrize(
    "raw,kwargs,error",
    [
        (b"{}", {"content_type": "application/xml"}, UnsupportedMediaType),
        (b"{}", {"content_encoding": "deflate"}, UnsupportedMediaType),
        (b"not gzip", {"content_encoding": "gzip"}, MalformedBody),
        (b"{", {}, MalformedBody),
        (b"\xff\xfe", {}, MalformedBody),
        (b"[" + b"1," * 100 + b"1]", {}, PayloadTooLarge),
    ],
)
def test_bad_bodies(raw, kwargs, error):
    args = {"content_type": "application/json", "content_encoding": None, **kwargs}
    with pytest.raises(error):
        decode_body(raw, limit=100, **args)


@pytest.mark.parametrize("raw", [
    b'{"n": 123456789012345678901234567890, "m": -9223372036854775809, "f": 59.9, "big": 1e400}',
    '{"a": "é"}'.encode("utf-16"),  # json.loads detects UTF-16 and UTF-32 from the bytes
    '\ufeff{"a": "é"}'.encode(),  # and a UTF-8 byte order mark
    b'{"s": "\\ud800", "a": 1, "a": 2}',  # a lone surrogate; the last of repeated keys wins
])
def test_bodies_are_read_as_json_reads_them(raw):
    value = decode_body(raw, content_type=None, content_encoding=None, limit=1000)
    assert value == json.loads(raw)
    assert [type(v) for v in value.values()] == [type(v) for v in json.loads(raw).values()]


def test_nan_is_read_as_json_reads_it():
    assert math.isnan(decode_body(b'{"x": NaN}', content_type=None, content_encoding=None, limit=100)["x"])


def test_malformed_json_names_the_place():
    with pytest.raises(MalformedBody, match="line 1 column 7"):
        decode_body(b'{"a": }', content_type=None, content_encoding=None, limit=1000)
