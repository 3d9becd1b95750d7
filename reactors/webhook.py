"""Delivering a reaction to a webhook, with retries and backoff; the HTTP client is passed in."""

from __future__ import annotations

import asyncio
import logging

import httpx

from clickstream.reactions import Reaction

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    retriable = True


async def post_reaction(client: httpx.AsyncClient, url: str, reaction: Reaction) -> None:
    """POST one reaction; the reaction id goes in ``Idempotency-Key`` so receivers can drop repeats."""
    try:
        response = await client.post(
            url,
            content=reaction.to_bytes(),
            headers={"Content-Type": "application/json", "Idempotency-Key": reaction.reaction_id},
        )
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{url}: {exc!r}") from exc
    if response.status_code >= 300:
        raise DeliveryFailed(f"{url} answered {response.status_code}")


def backoff_delays(base: float = 0.5, cap: float = 30.0):
    """0.5, 1, 2, 4 ... seconds, capped: a webhook that is down is retried, never given up on silently."""
    delay = base
    while True:
        yield delay
        delay = min(cap, delay * 2)


async def deliver_until_accepted(
    client: httpx.AsyncClient, url: str, reaction: Reaction, *, sleep=asyncio.sleep
) -> int:
    """Retry until the webhook accepts; returns the number of failed attempts before success."""
    failures = 0
    for delay in backoff_delays():
        try:
            await post_reaction(client, url, reaction)
            return failures
        except DeliveryFailed as exc:
            failures += 1
            log.warning("webhook delivery of %s failed (%s); retrying in %.1fs", reaction.reaction_id, exc, delay)
            await sleep(delay)
    raise AssertionError("unreachable")
