"""A small lake whose right answers can be counted by hand, shared by the dashboard's tests.

Events (all on 2026-11-20, plus one session the next day), ``T0`` = 09:00 UTC:

=====  =======  ======  ========================================================================  =====
sess.  visitor  source  events (minutes after T0)                                                 pages
=====  =======  ======  ========================================================================  =====
s1     v1       web     0 page /, 1 page /pricing, 1.5 Experiment Viewed exp1/a, 2 Order Completed    2
s2     v2       web     10 page /, 10.2 Experiment Viewed exp1/b, 11 page /pricing, 12 page /signup    3
s3     v3 (bot) web     20 page /                                                                 1
s4     v4       app     30 page /pricing (google, utm november), 31 Order Completed              1
s5     v1       web     next day + 0: page /                                                      1
=====  =======  ======  ========================================================================  =====

Metrics are written around ``now`` (the live view reads the wall clock): see :func:`live_metrics`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from clickstream.events import Event, RejectedEvent
from clickstream.metrics import MetricRow
from clickstream.reactions import Reaction, reaction_id

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
CHROME = dict(browser="Chrome", os="Windows", device_type="desktop")
SAFARI = dict(browser="Mobile Safari", os="iOS", device_type="mobile")
BOT = dict(browser="Googlebot", os="Other", device_type="bot", is_bot=True)


def demo_events() -> list[Event]:
    n = iter(range(1000))

    def ev(minutes: float, visitor: str, session: str, kind: str, name: str, path: str | None = None,
           source: str = "web", agent: dict = CHROME, **fields) -> Event:
        at = T0 + timedelta(minutes=minutes)
        return Event(event_id=f"e{next(n)}", type=kind, event=name, anonymous_id=visitor, session_id=session,
                     timestamp=at, received_at=at, source=source, path=path, host="shop.example",
                     **agent, **fields)

    return [
        ev(0, "v1", "s1", "page", "Home", "/"),
        ev(1, "v1", "s1", "page", "Pricing", "/pricing", referrer_host="shop.example"),
        ev(1.5, "v1", "s1", "track", "Experiment Viewed", properties={"experimentId": "exp1", "variationName": "a"}),
        ev(2, "v1", "s1", "track", "Order Completed", properties={"revenue": 10}),
        ev(10, "v2", "s2", "page", "Home", "/", agent=SAFARI),
        ev(10.2, "v2", "s2", "track", "Experiment Viewed", agent=SAFARI,
           properties={"experimentId": "exp1", "variationName": "b"}),
        ev(11, "v2", "s2", "page", "Pricing", "/pricing", agent=SAFARI),
        ev(12, "v2", "s2", "page", "Signup", "/signup", agent=SAFARI),
        ev(20, "v3", "s3", "page", "Home", "/", agent=BOT),
        ev(30, "v4", "s4", "page", "Pricing", "/pricing", source="app", referrer_host="www.google.com",
           utm_source="newsletter", utm_medium="email", utm_campaign="november"),
        ev(31, "v4", "s4", "track", "Order Completed", source="app"),
        ev(24 * 60, "v1", "s5", "page", "Home", "/"),
    ]


def demo_reactions(now: datetime) -> list[Reaction]:
    """Three on T0's day (two of rule ``hot-page``), one two minutes before ``now``."""

    def reaction(rule: str, subject: str, at: datetime, value: float) -> Reaction:
        start = at.replace(second=0, microsecond=0)
        return Reaction(reaction_id=reaction_id(rule, subject, start), rule=rule, kind="threshold",
                        subject=subject, window_start=start, window_end=start + timedelta(minutes=1),
                        value=value, threshold=100, message=f"{subject}: {value:.0f} >= 100", created_at=at)

    return [
        reaction("hot-page", "web:/pricing", T0 + timedelta(minutes=5), 120),
        reaction("hot-page", "web:/", T0 + timedelta(minutes=6), 150),
        reaction("bot-surge", "web", T0 + timedelta(minutes=7), 300),
        reaction("hot-page", "web:/live", now - timedelta(minutes=2), 101),
    ]


def demo_invalid() -> list[RejectedEvent]:
    def rejected(reason: str, minutes: int) -> RejectedEvent:
        return RejectedEvent(received_at=T0 + timedelta(minutes=minutes), source="web", reason=reason,
                             payload='{"type":"track"}', endpoint="/v1/track")

    return [rejected("either userId or anonymousId is required", 1),
            rejected("either userId or anonymousId is required", 2),
            rejected("malformed JSON", 3)]


def live_metrics(now: datetime) -> list[MetricRow]:
    """Two 10 s windows (50 then 80 events), two 1-minute windows (12 then 7 visitors, 9 then 5 active
    sessions; page views of / 20 then 5, of /pricing 0 then 30), all a few minutes before ``now``; and
    windows two hours old that the live view must not show."""
    base = (now - timedelta(minutes=3)).replace(microsecond=0)
    base = base - timedelta(seconds=base.second % 10)

    def row(start: datetime, window_s: int, metric: str, value: float, dimension: str = "") -> MetricRow:
        return MetricRow(window_start=start, window_end=start + timedelta(seconds=window_s), window_s=window_s,
                         source="web", metric=metric, dimension=dimension, value=value)

    old = base - timedelta(hours=2)
    return [
        row(base - timedelta(seconds=10), 10, "events", 50),
        row(base, 10, "events", 80),
        row(base - timedelta(seconds=60), 60, "unique_visitors", 12),
        row(base - timedelta(seconds=60), 60, "active_sessions", 9),
        row(base - timedelta(seconds=60), 60, "page_views", 20, "path=/"),
        row(base, 60, "unique_visitors", 7),
        row(base, 60, "active_sessions", 5),
        row(base, 60, "page_views", 5, "path=/"),
        row(base, 60, "page_views", 30, "path=/pricing"),
        row(old, 10, "events", 99_990),
        row(old, 60, "page_views", 9999, "path=/old"),
    ]


def write_demo_lake(settings, write_lake, now: datetime) -> None:
    write_lake(settings, demo_events())
    write_lake(settings, demo_reactions(now), table="reactions")
    write_lake(settings, demo_invalid(), table="invalid_events")
    write_lake(settings, live_metrics(now), table="metrics")
