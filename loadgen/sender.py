"""Sending planned deliveries to the ingest API over HTTP, on schedule, and counting the answers.

429 and 503 are retried after the ``Retry-After`` the API gives (nothing of such a request was
kept); so are connection errors, with backoff. 2xx and 400 are final: the API has then put every
call of the request on the raw or the invalid topic. Any other answer (401, 413, ...) is a
failure of the run and is reported. Each answer is checked against the model: the calls the API
accepted must be exactly the valid ones.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import httpx

from loadgen.deliveries import Delivery

RETRIABLE = {429, 503}
FINAL = {200, 400}


@dataclass
class SendReport:
    statuses: Counter = field(default_factory=Counter)  # every answer, retries included ("error": no answer)
    retries: int = 0
    acknowledged: list[Delivery] = field(default_factory=list)  # answered for good: 2xx or 400
    failed: list[tuple[Delivery, str]] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # answers that differ from what the model expects
    # Every attempt as (sent, answered, status), on the monotonic clock of ``send_deliveries``:
    # request latencies, and which answers came while a dependency was down.
    attempts: list[tuple[float, float, int | str]] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def calls_sent(self) -> int:
        return sum(len(d.calls) for d in self.acknowledged) + sum(len(d.calls) for d, _ in self.failed)


def request_body(delivery: Delivery, sent_at: datetime) -> dict:
    """The JSON body of a delivery, stamped with when it is sent (the API corrects client clocks with it)."""
    stamp = sent_at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if delivery.endpoint == "batch":
        return {"batch": [call.payload for call in delivery.calls], "sentAt": stamp}
    return {**delivery.calls[0].payload, "sentAt": stamp}


def check_answer(delivery: Delivery, status: int, body: dict) -> str | None:
    """Why an answer does not match the model, or None if it does."""
    invalid = sorted(i for i, c in enumerate(delivery.calls) if not c.valid)
    if delivery.endpoint != "batch" or not delivery.expected_accepted:
        want = 200 if delivery.expected_accepted else 400
        if status != want:
            return f"{delivery.endpoint} {delivery.calls[0].message_id}: expected {want}, got {status} {body}"
        return None
    rejected = sorted(r.get("index") for r in body.get("rejected", []))
    if status != 200 or body.get("accepted") != delivery.expected_accepted or rejected != invalid:
        return (f"batch of {len(delivery.calls)} starting {delivery.calls[0].message_id}: expected 200 with "
                f"{delivery.expected_accepted} accepted and {invalid} rejected, got {status} {body}")
    return None


async def send_deliveries(
    deliveries: list[Delivery],
    client: httpx.AsyncClient,
    write_key: str,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    monotonic: Callable[[], float] = time.monotonic,
    concurrency: int = 8,
    max_attempts: int = 8,
    on_done: Callable[[Delivery], None] = lambda d: None,
) -> SendReport:
    """Send each delivery at its ``send_at`` (seconds after this call), at most ``concurrency`` at once.

    When the API is slower than the schedule, deliveries go out as fast as it answers.
    """
    report = SendReport()
    slots = asyncio.Semaphore(concurrency)
    started = monotonic()
    auth = httpx.BasicAuth(write_key, "")

    async def deliver(delivery: Delivery) -> None:
        try:
            path = f"/v1/{delivery.endpoint}"
            for attempt in range(1, max_attempts + 1):
                sent = monotonic()
                try:
                    response = await client.post(path, json=request_body(delivery, now()), auth=auth,
                                                 headers={"User-Agent": delivery.user_agent})
                except httpx.TransportError as exc:
                    report.statuses["error"] += 1
                    report.attempts.append((sent, monotonic(), "error"))
                    wait, reason = min(2.0 ** attempt * 0.1, 5.0), f"{type(exc).__name__}: {exc}"
                else:
                    report.statuses[response.status_code] += 1
                    report.attempts.append((sent, monotonic(), response.status_code))
                    if response.status_code in FINAL:
                        report.acknowledged.append(delivery)
                        try:
                            body = response.json()
                        except ValueError:
                            body = {}
                        problem = check_answer(delivery, response.status_code, body)
                        if problem:
                            report.mismatches.append(problem)
                        return
                    if response.status_code not in RETRIABLE:
                        report.failed.append((delivery, f"{response.status_code} {response.text[:200]}"))
                        return
                    wait = float(response.headers.get("retry-after") or 1)
                    reason = f"{response.status_code} after {attempt} attempts"
                if attempt < max_attempts:
                    report.retries += 1
                    await asyncio.sleep(wait)
            report.failed.append((delivery, reason))
        finally:
            slots.release()
            on_done(delivery)

    tasks = []
    for delivery in deliveries:
        delay = started + delivery.send_at - monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(deliver(delivery)))
    await asyncio.gather(*tasks)
    report.elapsed_s = monotonic() - started
    return report
