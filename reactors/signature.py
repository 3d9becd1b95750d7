"""Signing webhook bodies: ``X-Clickstream-Signature: sha256=<hex HMAC-SHA256 of the exact body>``."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Clickstream-Signature"


def sign(secret: str, body: bytes) -> str:
    """The header value for ``body``: receivers recompute it over the raw bytes they received."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body``; compared in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)
