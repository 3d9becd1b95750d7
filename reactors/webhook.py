"""The webhook handler: one signed JSON POST per attempt; the HTTP client is passed in.

Headers: ``Idempotency-Key: <reaction_id>`` (the same on every retry, redelivery and replay,
so receivers can drop repeats) and, with a secret, ``X-Clickstream-Signature: sha256=<hex>``.
"""

from __future__ import annotations

import httpx

from clickstream.reactions import Reaction
from reactors.errors import DeliveryFailed
from reactors.signature import SIGNATURE_HEADER, sign

# Answers that may succeed later; any other non-2xx answer will not change by retrying.
RETRIABLE_STATUSES = frozenset({408, 425, 429})


def request_headers(reaction: Reaction, body: bytes, secret: str | None, extra: dict[str, str]) -> dict[str, str]:
    headers = {**extra, "Content-Type": "application/json", "Idempotency-Key": reaction.reaction_id,
               "User-Agent": "clickstream-reactor"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return headers


def check_status(url: str, status: int) -> None:
    """Raise unless ``status`` is 2xx; 5xx, 408, 425 and 429 are retriable."""
    if 200 <= status < 300:
        return
    retriable = status >= 500 or status in RETRIABLE_STATUSES
    hint = " (redirects are not followed: configure the final URL)" if 300 <= status < 400 else ""
    raise DeliveryFailed(f"{url} answered {status}{hint}", retriable=retriable)


class WebhookHandler:
    def __init__(self, client: httpx.AsyncClient, url: str, *, secret: str | None = None,
                 timeout_s: float = 5.0, headers: dict[str, str] | None = None):
        self.client, self.url, self.secret, self.timeout_s = client, url, secret, timeout_s
        self.headers = dict(headers or {})

    async def __call__(self, reaction: Reaction) -> None:
        body = reaction.to_bytes()
        try:
            response = await self.client.post(self.url, content=body, timeout=self.timeout_s,
                                              headers=request_headers(reaction, body, self.secret, self.headers))
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        check_status(self.url, response.status_code)
