"""What the pipeline should hold after a run: aggregates of the calls the API acknowledged,
computed from the model (not from the pipeline), to check the pipeline against.

Definitions follow the query layer's (``query/analyses.py``):

* a session is a device's run of events with no gap of ``session_timeout`` (30 minutes) or
  more; the device is ``anonymousId``, else ``userId``, as the stream processor keys sessions;
* a session reaches funnel step k if it has steps 1..k in that order, each the first
  occurrence at or after the previous step;
* a variant's exposures are the visitors whose first ``Experiment Viewed`` showed it, its
  conversions those of them who sent ``Order Completed`` at or after that exposure.

Duplicates count once in everything but ``events_accepted`` (what the raw topic holds).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any, Iterable

from loadgen import catalog
from loadgen.deliveries import Delivery
from loadgen.visitors import Call

SESSION_TIMEOUT = timedelta(minutes=30)

# (name, matches) for each funnel step: a page path or a track event.
FUNNEL: tuple[tuple[str, str, str], ...] = (
    ("/", "page", "/"),
    ("/products", "page", "/products"),
    ("Product Viewed", "track", "Product Viewed"),
    ("Product Added", "track", "Product Added"),
    ("/checkout", "page", "/checkout"),
    ("Order Completed", "track", "Order Completed"),
)


def _is_step(call: Call, step: tuple[str, str, str]) -> bool:
    _, kind, value = step
    return call.type == kind and (call.path if kind == "page" else call.event) == value


def sessions(events: Iterable[Call], timeout: timedelta = SESSION_TIMEOUT) -> list[list[Call]]:
    """Each device's events split where the gap between two consecutive ones reaches ``timeout``."""
    by_device: dict[str, list[Call]] = defaultdict(list)
    for call in events:
        by_device[call.session_key].append(call)
    out = []
    for device in sorted(by_device):
        ordered = sorted(by_device[device], key=lambda c: (c.at, c.message_id))
        current = [ordered[0]]
        for call in ordered[1:]:
            if call.at - current[-1].at >= timeout:
                out.append(current)
                current = []
            current.append(call)
        out.append(current)
    return out


def funnel(session_list: list[list[Call]]) -> list[dict[str, Any]]:
    """Sessions reaching each step of :data:`FUNNEL` in order."""
    reached = [0] * len(FUNNEL)
    for session in session_list:
        previous = None
        for i, step in enumerate(FUNNEL):
            times = [c.at for c in session if _is_step(c, step) and (previous is None or c.at >= previous)]
            if not times:
                break
            previous = min(times)
            reached[i] += 1
    return [{"step": name, "sessions": n} for (name, _, _), n in zip(FUNNEL, reached)]


def experiment(events: list[Call]) -> dict[str, dict[str, int]]:
    """Exposures and conversions per variant name."""
    exposed: dict[str, tuple] = {}
    for call in sorted(events, key=lambda c: (c.at, c.message_id)):
        props = call.payload.get("properties", {})
        if call.event == "Experiment Viewed" and props.get("experiment_id") == catalog.EXPERIMENT_ID:
            exposed.setdefault(call.visitor, (call.at, props["variation_name"]))
    converted = {c.visitor for c in events if c.event == "Order Completed"
                 and c.visitor in exposed and c.at >= exposed[c.visitor][0]}
    result = {v.variation_name: {"exposures": 0, "conversions": 0} for v in catalog.VARIANTS}
    for visitor, (_, variant) in exposed.items():
        result[variant]["exposures"] += 1
        result[variant]["conversions"] += visitor in converted
    return result


def expected_aggregates(acknowledged: Iterable[Delivery], timeout: timedelta = SESSION_TIMEOUT) -> dict[str, Any]:
    """The aggregates of the calls in the deliveries the API answered for good (2xx or 400)."""
    copies = [call for delivery in acknowledged for call in delivery.calls]
    accepted = [c for c in copies if c.valid]
    distinct = list({c.message_id: c for c in accepted}.values())
    humans = [c for c in distinct if c.device != "bot"]
    all_sessions = sessions(distinct, timeout)
    orders = [c for c in distinct if c.event == "Order Completed"]
    return {
        "events_sent": len(copies),
        "events_accepted": len(accepted),
        "distinct_events": len(distinct),
        "duplicates_accepted": len(accepted) - len(distinct),
        "invalid_rejected": len(copies) - len(accepted),
        "visitors": len({c.visitor for c in distinct}),
        "bot_events": len(distinct) - len(humans),
        "events_by_type": dict(sorted(Counter(c.type for c in distinct).items())),
        "events_by_device": dict(sorted(Counter(c.device for c in distinct).items())),
        "sessions": len(all_sessions),
        "sessions_excluding_bots": sum(1 for s in all_sessions if s[0].device != "bot"),
        "session_timeout_s": int(timeout.total_seconds()),
        "funnel": funnel(all_sessions),
        "orders": len(orders),
        "revenue": round(sum(c.payload["properties"]["revenue"] for c in orders), 2),
        "experiment": {"experiment_id": catalog.EXPERIMENT_ID, "variants": experiment(distinct)},
    }
