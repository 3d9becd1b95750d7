import base64

import pytest

from ingest_api.auth import write_key_from_authorization


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "header,expected",
    [
        (basic("wk_123:"), "wk_123"),
        (basic("wk_123"), "wk_123"),
        (basic("wk_123:secret"), "wk_123"),
        (basic(":"), None),
        ("Bearer abc", None),
        ("Basic !!!", None),
        ("", None),
        (None, None),
    ],
)
def test_write_key_from_authorization(header, expected):
    assert write_key_from_authorization(header) == expected
