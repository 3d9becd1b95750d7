"""The visitor model: who comes to the shop, from where, on which device, and how far they get.

:func:`generate_calls` turns a seed into the Segment calls of a population of visitors over a
time span. Each visitor has a device (a real browser's user agent), an origin (referrer and UTM
campaign), an experiment variant, and one or more visits; each visit walks the shop's funnel
``/`` -> ``/products`` -> ``/product/<id>`` (``Product Viewed``, ``Experiment Viewed``) ->
``Product Added`` -> ``/checkout`` -> ``Order Completed`` and drops off along the way, variant B
more rarely than A. Crawlers read pages and nothing else. A share of calls is invalid (as a buggy
client would send them); the API must reject exactly those.

Pure: no clock, no I/O; the same seed gives the same calls (message ids included) whatever the
start and span, which only place them in time.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from loadgen import catalog
from loadgen.catalog import Origin, Variant


@dataclass(frozen=True)
class Profile:
    """The shares and times that shape the traffic; the defaults are a plausible small shop."""

    bot_share: float = 0.05         # visits made by crawlers
    invalid_share: float = 0.02     # extra, invalid calls per valid call
    returning_share: float = 0.30   # visitors who come back for more visits
    identified_share: float = 0.20  # visitors who are logged-in customers (userId on every call)
    think_s: float = 8.0            # mean time between two steps of a visit
    duplicate_share: float = 0.02   # calls delivered twice (same messageId)
    out_of_order_share: float = 0.05  # calls delivered late, after later ones
    batch_share: float = 0.7        # calls sent in /v1/batch requests rather than one by one


@dataclass(frozen=True)
class Call:
    """One Segment call a visitor's client makes, with what the model knows about it."""

    at: datetime            # event time
    payload: dict[str, Any]  # the call as sent (without sentAt, which the sender adds)
    valid: bool
    visitor: str            # the id the pipeline keys it by: userId, else anonymousId ("" if neither)
    device: str             # desktop, mobile, tablet or bot
    variant: str | None = None  # the visitor's experiment variant (humans only)

    @property
    def message_id(self) -> str:
        return self.payload["messageId"]

    @property
    def type(self) -> str:
        return self.payload.get("type", "")

    @property
    def event(self) -> str | None:
        return self.payload.get("event")

    @property
    def session_key(self) -> str:
        """The key the pipeline keeps sessions under: the anonymous id, else the user id (the device)."""
        return self.payload.get("anonymousId") or self.payload.get("userId") or ""

    @property
    def path(self) -> str | None:
        return self.payload.get("properties", {}).get("path") if self.type == "page" else None


@dataclass
class _Visitor:
    anonymous_id: str
    user_id: str | None
    device: str
    user_agent: str
    ip: str
    variant: Variant | None
    calls: list[Call] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.user_id or self.anonymous_id


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _weighted(rng: random.Random, items, weights):
    return rng.choices(items, weights=weights, k=1)[0]


def _ms(t: datetime) -> datetime:
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def generate_calls(seed: int, *, start: datetime, span: timedelta, target_calls: int,
                   profile: Profile = Profile()) -> list[Call]:
    """Visitors' calls until there are at least ``target_calls``, between ``start`` and ``start + span``,
    in event-time order."""
    if span <= timedelta(0):
        raise ValueError("the span must be positive")
    rng = random.Random(seed)
    start = _ms(start.astimezone(timezone.utc))
    calls: list[Call] = []
    while len(calls) < target_calls:
        calls += _visitor_calls(rng, start, span, profile)
    calls.sort(key=lambda c: (c.at, c.message_id))
    return calls


def _new_visitor(rng: random.Random, profile: Profile, bot: bool) -> _Visitor:
    anonymous_id = _uuid(rng)
    ip = f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"
    if bot:
        return _Visitor(anonymous_id, None, "bot", rng.choice(catalog.CRAWLERS), ip, None)
    devices = list(catalog.DEVICES)
    device = _weighted(rng, devices, [catalog.DEVICES[d][0] for d in devices])
    user_agent = rng.choice(catalog.DEVICES[device][1])
    user_id = f"user-{rng.randrange(10**6):06d}" if rng.random() < profile.identified_share else None
    return _Visitor(anonymous_id, user_id, device, user_agent, ip, rng.choice(catalog.VARIANTS))


def _visitor_calls(rng: random.Random, start: datetime, span: timedelta, profile: Profile) -> list[Call]:
    bot = rng.random() < profile.bot_share
    visitor = _new_visitor(rng, profile, bot)
    visits = 1 if bot or rng.random() >= profile.returning_share else rng.randint(2, 4)
    for number in range(visits):
        steps = _crawl(rng) if bot else _shop_visit(rng, visitor, first=number == 0)
        gaps = [0.0] + [min(rng.expovariate(1 / (1.0 if bot else profile.think_s)), 600.0) for _ in steps[1:]]
        # A visit longer than the whole span is squeezed into it; otherwise it starts at a random moment.
        length = sum(gaps)
        span_s = span.total_seconds()
        squeeze = min(1.0, span_s / length) if length else 1.0
        offset = rng.uniform(0, max(0.0, span_s - length * squeeze))
        for (kind, body), gap in zip(steps, gaps):
            offset += gap * squeeze
            at = _ms(start + timedelta(seconds=offset))
            visitor.calls.append(_call(rng, visitor, kind, body, at))
            if rng.random() < profile.invalid_share:
                visitor.calls.append(_invalid_call(rng, visitor, at))
    return visitor.calls


Step = tuple[str, dict[str, Any]]  # call type and its fields (properties, event, ...)


def _page(path: str, origin: Origin | None = None, name: str | None = None, **extra) -> Step:
    url = catalog.HOST + path
    properties: dict[str, Any] = {"path": path, **extra}
    if origin is not None:
        tags = [(k, v) for k, v in (("utm_source", origin.utm_source), ("utm_medium", origin.utm_medium),
                                    ("utm_campaign", origin.utm_campaign)) if v]
        if tags:
            url += "?" + "&".join(f"{k}={v}" for k, v in tags)
            properties["search"] = "?" + url.split("?", 1)[1]
        if origin.referrer:
            properties["referrer"] = origin.referrer
    properties["url"] = url
    return "page", {"name": name or PAGE_NAMES.get(path) or path.strip("/").title(), "properties": properties}


PAGE_NAMES = {"/": "Home", "/products": "Products", "/checkout": "Checkout"}


def _track(event: str, **properties) -> Step:
    return "track", {"event": event, "properties": properties}


def _shop_visit(rng: random.Random, visitor: _Visitor, first: bool) -> list[Step]:
    """One human visit: the funnel as far as this visitor goes, with a detour now and then."""
    origin = _weighted(rng, catalog.ORIGINS, [o.weight for o in catalog.ORIGINS])
    steps: list[Step] = []
    if first and visitor.user_id:
        steps.append(("identify", {"traits": {"plan": rng.choice(("free", "plus"))}}))
    if rng.random() < 0.15:  # landed on content, not the shop
        steps.append(_page(rng.choice(catalog.OTHER_PAGES), origin))
        if rng.random() < 0.6:
            return steps
        steps.append(_page("/"))
    else:
        steps.append(_page("/", origin))
    boost = visitor.variant.step_boost if visitor.variant else 1.0

    def goes_on(step: str, boosted: bool = False) -> bool:
        return rng.random() < min(0.95, catalog.CONTINUE[step] * (boost if boosted else 1.0))

    if not goes_on("products"):
        return steps
    steps.append(_page("/products"))
    if not goes_on("product"):
        return steps
    product_id, name, price = rng.choice(catalog.PRODUCTS)
    product = {"product_id": product_id, "name": name, "price": price}
    steps.append(_page(f"/product/{product_id}", name=name, title=name))
    steps.append(_track("Product Viewed", **product))
    variant = visitor.variant
    steps.append(_track("Experiment Viewed", experiment_id=catalog.EXPERIMENT_ID,
                        experiment_name=catalog.EXPERIMENT_NAME, variation_id=variant.variation_id,
                        variation_name=variant.variation_name))
    if rng.random() < 0.1:
        steps.append(_page(rng.choice(("/faq", "/shipping"))))
    if not goes_on("add", boosted=True):
        return steps
    quantity = rng.choice((1, 1, 1, 2, 3))
    steps.append(_track("Product Added", quantity=quantity, cart_id=_uuid(rng)[:8], **product))
    if not goes_on("checkout", boosted=True):
        return steps
    steps.append(_page("/checkout"))
    if not goes_on("order", boosted=True):
        return steps
    revenue = round(price * quantity, 2)
    steps.append(_track("Order Completed", order_id=f"order-{_uuid(rng)[:12]}", revenue=revenue,
                        currency="USD", products=[{**product, "quantity": quantity}]))
    return steps


def _crawl(rng: random.Random) -> list[Step]:
    pages = ["/", "/products", *(f"/product/{p[0]}" for p in catalog.PRODUCTS), *catalog.OTHER_PAGES]
    return [_page(path) for path in rng.sample(pages, rng.randint(3, 8))]


def _context(visitor: _Visitor) -> dict[str, Any]:
    return {"userAgent": visitor.user_agent, "ip": visitor.ip,
            "library": {"name": "clickstream-loadgen", "version": "0.1.0"}}


def _call(rng: random.Random, visitor: _Visitor, kind: str, body: dict[str, Any], at: datetime) -> Call:
    payload: dict[str, Any] = {"type": kind, "messageId": _uuid(rng), "anonymousId": visitor.anonymous_id}
    if visitor.user_id:
        payload["userId"] = visitor.user_id
    payload.update(body)
    payload["timestamp"] = _iso(at)
    payload["context"] = _context(visitor)
    variant = visitor.variant.variation_name if visitor.variant else None
    return Call(at, payload, True, visitor.key, visitor.device, variant)


# Invalid whatever endpoint carries them, except "unknown type", which a single-call endpoint
# would override with its own type: that kind is only ever sent in a batch (see deliveries).
INVALID_KINDS = ("no event name", "no identity", "bad timestamp", "numeric timestamp", "group without id",
                 "unknown type")


def _invalid_call(rng: random.Random, visitor: _Visitor, at: datetime) -> Call:
    kind = rng.choice(INVALID_KINDS)
    payload: dict[str, Any] = {"type": "track", "messageId": _uuid(rng), "anonymousId": visitor.anonymous_id,
                               "event": "Button Clicked", "timestamp": _iso(at), "context": _context(visitor)}
    if kind == "no event name":
        del payload["event"]
    elif kind == "no identity":
        del payload["anonymousId"]
    elif kind == "bad timestamp":
        payload["timestamp"] = "yesterday"
    elif kind == "numeric timestamp":
        payload["timestamp"] = int(at.timestamp() * 1000)
    elif kind == "group without id":
        payload["type"] = "group"
    else:
        payload["type"] = "pageview"
    return Call(at, payload, False, visitor.key if "anonymousId" in payload else "", visitor.device)
