"""How the visitors' calls reach the API: which go in a ``/v1/batch`` request and which alone,
when each is sent, which arrive late (out of order) and which twice (same messageId).

Pure and seeded, like the visitor model. Send times are seconds from the start of the run:
a call is sent ``compression`` seconds per second of event time after the first event (1 for
live traffic; less to backfill a long history in a short run), later if it is delayed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from loadgen.visitors import Call, Profile

SINGLE_ENDPOINTS = ("track", "page", "screen", "identify", "group", "alias")
MAX_BATCH = 25
BATCH_WINDOW_S = 1.0  # a batch holds the calls queued within this much send time, as SDKs flush
LATE_S = (1.0, 8.0)  # how late an out-of-order call arrives
REPEAT_S = (0.5, 5.0)  # how long after the first copy a duplicate is resent


@dataclass(frozen=True)
class Delivery:
    """One HTTP request: to ``/v1/batch`` or to ``/v1/<endpoint>`` with a single call."""

    send_at: float  # seconds after the start of the run
    endpoint: str   # "batch" or a call type
    calls: tuple[Call, ...]

    @property
    def user_agent(self) -> str:
        """A single call comes from the visitor's browser; a batch from a server-side SDK relaying
        each visitor's agent in ``context.userAgent``."""
        if self.endpoint == "batch":
            return "clickstream-loadgen/0.1 (server-side relay)"
        return self.calls[0].payload["context"]["userAgent"]

    @property
    def expected_accepted(self) -> int:
        return sum(c.valid for c in self.calls)


def plan_deliveries(calls: list[Call], seed: int, *, start: datetime, compression: float = 1.0,
                    end_s: float | None = None, profile: Profile = Profile()) -> list[Delivery]:
    """The requests that carry ``calls`` (plus duplicates), in the order they are sent.

    Late and repeated copies are held to ``end_s`` (the end of the run) when given, so a run
    lasts as long as asked; a call already due at the end is still sent, just not later.
    """
    batched: list[tuple[float, int, Call]] = []
    singles: list[Delivery] = []
    for n, call in enumerate(calls):
        # Each call's fate is drawn from its own seed, so the same calls are repeated, late or
        # batched whatever the start and span of the run.
        rng = random.Random(f"{seed}:{call.message_id}")
        arrival = (call.at - start).total_seconds() * compression
        copies = [arrival]
        if rng.random() < profile.out_of_order_share:
            copies[0] += rng.uniform(*LATE_S)
        if rng.random() < profile.duplicate_share:
            copies.append(copies[0] + rng.uniform(*REPEAT_S))
        if end_s is not None:
            copies = [max(arrival, min(at, end_s)) for at in copies]
        in_batch = rng.random() < profile.batch_share
        for copy, at in enumerate(copies):
            if in_batch or call.type not in SINGLE_ENDPOINTS:
                batched.append((at, n * 2 + copy, call))
            else:
                singles.append(Delivery(at, call.type, (call,)))
    batched.sort(key=lambda item: (item[0], item[1]))
    batches: list[Delivery] = []
    current: list[tuple[float, int, Call]] = []
    for item in batched:
        if current and (len(current) >= MAX_BATCH or item[0] - current[0][0] > BATCH_WINDOW_S):
            batches.append(_batch(current))
            current = []
        current.append(item)
    if current:
        batches.append(_batch(current))
    return sorted(singles + batches, key=lambda d: (d.send_at, d.calls[0].message_id, d.endpoint))


def _batch(items: list[tuple[float, int, Call]]) -> Delivery:
    # Sent when its last call was queued.
    return Delivery(items[-1][0], "batch", tuple(call for _, _, call in items))
