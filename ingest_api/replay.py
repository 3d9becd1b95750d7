"""Replaying rejected events: send stored payloads back through the API's validation.

Rejected calls are kept in the lake's ``invalid_events`` table with their reason and raw
payload. Once the cause is fixed (a source's configuration, a client bug worked around),
``clickstream replay invalid`` posts them again to the API as their source, so they meet
exactly the checks and enrichment live traffic meets; those still invalid are rejected
again, with their new reason, and stay inspectable.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

from ingest_api.body import MAX_REQUEST_BYTES

_REPLAY_NAMESPACE = uuid.UUID("2b9d2c1e-0d7f-4f57-9b0c-58a3c4f1e7aa")


@dataclass(frozen=True)
class StoredRejection:
    source: str
    reason: str
    payload: str
    endpoint: str
    batch_index: int | None
    request_id: str | None


@dataclass
class ReplayReport:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    unsendable: list[str] = field(default_factory=list)  # why some could not be sent at all


def replay_call(rejection: StoredRejection) -> dict | None:
    """The call to send again, or None when the payload is not a JSON object (malformed JSON).

    A call without a messageId gets one derived from where it was first received, so replaying
    the same rejection twice yields the same event id (and is removed downstream as a repeat).
    """
    try:
        call = json.loads(rejection.payload)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict):
        return None
    if rejection.endpoint != "batch":
        call.setdefault("type", rejection.endpoint)
    if not call.get("messageId"):
        origin = f"{rejection.request_id}|{rejection.batch_index}|{rejection.payload}"
        call["messageId"] = str(uuid.uuid5(_REPLAY_NAMESPACE, origin))
    return call


def batches(calls: list[dict], limit: int = MAX_REQUEST_BYTES * 4 // 5) -> list[list[dict]]:
    """Split calls into batches that stay under the request limit."""
    out, current, size = [], [], 0
    for call in calls:
        n = len(json.dumps(call)) + 1
        if current and size + n > limit:
            out.append(current)
            current, size = [], 0
        current.append(call)
        size += n
    if current:
        out.append(current)
    return out


def replay(rejections: list[StoredRejection], write_keys: dict[str, str], client: httpx.Client) -> ReplayReport:
    """Post the rejections' calls to ``/v1/batch`` as their sources; ``client`` has the API's base URL."""
    report = ReplayReport()
    by_source: dict[str, list[dict]] = defaultdict(list)
    for r in rejections:
        call = replay_call(r)
        if call is None:
            report.unsendable.append(f"{r.source}: payload is not a JSON object ({r.reason})")
        elif r.source not in write_keys:
            report.unsendable.append(f"{r.source}: no such source any more")
        else:
            by_source[r.source].append(call)
    for source, calls in by_source.items():
        for batch in batches(calls):
            response = client.post("/v1/batch", json={"batch": batch}, auth=(write_keys[source], ""))
            report.sent += len(batch)
            if response.status_code in (200, 400) and "rejected" in response.json():
                body = response.json()
                report.rejected += len(body["rejected"])
                report.accepted += len(batch) - len(body["rejected"])
            else:
                response.raise_for_status()
                raise RuntimeError(f"unexpected answer {response.status_code}: {response.text[:200]}")
    return report
