"""Reading the write key of a request: the HTTP Basic user name, as Segment's SDKs send it."""

from __future__ import annotations

import base64
import binascii


def write_key_from_authorization(header: str | None) -> str | None:
    """``Basic base64(write_key:)`` -> ``write_key``; anything else -> None."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None
