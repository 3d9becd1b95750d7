"""A whole run planned up front: the visitors' calls and the requests that carry them.

Live (the default): events happen from ``now`` over ``duration_s`` seconds and are sent as they
happen, so the live views move. Backfill (``backfill_from``): events span from then until
``now`` and are sent within ``duration_s``, history compressed in time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from loadgen.deliveries import Delivery, plan_deliveries
from loadgen.visitors import Call, Profile, generate_calls


@dataclass(frozen=True)
class Plan:
    start: datetime
    span: timedelta
    calls: list[Call]
    deliveries: list[Delivery]


def plan_run(seed: int, *, rate: float, duration_s: float, now: datetime, backfill_from: datetime | None = None,
             profile: Profile = Profile()) -> Plan:
    """About ``rate * duration_s`` calls (whole visits: a few more), and their deliveries."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    if backfill_from is not None and backfill_from >= now:
        raise ValueError("the backfill start must be in the past")
    start = backfill_from or now
    span = (now - start) if backfill_from is not None else timedelta(seconds=duration_s)
    calls = generate_calls(seed, start=start, span=span, target_calls=max(1, round(rate * duration_s)),
                           profile=profile)
    compression = duration_s / span.total_seconds()
    deliveries = plan_deliveries(calls, seed, start=start, compression=compression, end_s=duration_s,
                                 profile=profile)
    return Plan(start, span, calls, deliveries)
