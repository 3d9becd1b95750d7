"""Segment's browser library, analytics.js (``@segment/analytics-next`` from npm, pinned in
``analytics_js/package.json``), delivers events end to end when its ``apiHost`` points at us: a shop
on another loopback origin loads the library's UMD bundle with one ``<script>`` tag, headless
Chromium makes one call of each type, and each call is read back from ``clickstream.raw`` once.

What analytics.js 1.84 sends (read in ``src/plugins/segmentio`` of the package, checked on the wire
below): ``POST {protocol}://{apiHost}/{letter}``, one call per request (``/p``, ``/t``, ``/i``,
``/g``, ``/a``, ``/s``), or in batching mode ``POST {apiHost}/b`` with ``{"writeKey", "batch": [...],
"sentAt"}``; ``Content-Type: text/plain`` and ``Authorization: Basic base64(writeKey:)`` (which makes
it a non-simple request: the browser sends a CORS preflight first, once per URL), and ``writeKey``
in every call's body as well. Beyond Segment's spec each call carries ``integrations`` and
``_metadata`` objects. ``context.library`` is ``{"name": "analytics.js", "version": "next-<version>"}``.

The library is given the settings its CDN would serve (``cdnSettings``), so it fetches nothing from
Segment; the tests assert that no request even tried to leave the machine. Its telemetry
(``POST {apiHost}/m``, ``{"series": [...]}``, every 30 s by default) is the subject of its own test.

Chromium is launched here rather than with ``tests/browser.py``'s fixtures: their contexts abort
off-machine requests with ``context.route``, and while any route is set Playwright answers every
CORS preflight itself (204, origin echoed), so the API's own preflight answers would go untested.
Off-machine requests are stopped instead by a proxy that does not exist (``--proxy-server``;
Chromium never sends loopback requests to a proxy).

``npm ci`` runs on first use, when ``analytics_js/node_modules`` is missing or holds another version.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, StaticSite, leaves_machine, off_loop
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from clickstream.events import Event
from clickstream.kafka import create_topics
from clickstream.settings import Settings
from clickstream.topics import Topics

pytestmark = pytest.mark.integration

PACKAGE_DIR = Path(__file__).resolve().parent / "analytics_js"
PACKAGE = "@segment/analytics-next"
PINNED_VERSION = json.loads((PACKAGE_DIR / "package.json").read_text())["dependencies"][PACKAGE]
# The UMD build, which defines `window.AnalyticsNext.AnalyticsBrowser`. (dist/umd/standalone.js is
# the snippet's loader instead: it takes its write key from a `window.analytics` snippet and always
# fetches its settings from Segment's CDN.)
BUNDLE = PACKAGE_DIR / "node_modules" / PACKAGE / "dist" / "umd" / "index.js"
BUNDLE_PATH = "/vendor/analytics-next.js"
LIBRARY = {"name": "analytics.js", "version": f"next-{PINNED_VERSION}"}
ANONYMOUS_ID_KEY = "ajs_anonymous_id"  # analytics.js keeps it in a cookie and in localStorage (as JSON)
CHECKOUT = "/shop/checkout?step=2&utm_source=newsletter&utm_medium=email&utm_campaign=spring"
DEAD_PROXY = "127.0.0.1:9"  # nothing listens there: every request not to loopback fails
CALL_PATHS = {"page": "/v1/p", "track": "/v1/t", "identify": "/v1/i", "group": "/v1/g", "alias": "/v1/a",
              "screen": "/v1/s"}


# --- the library, installed from the lock file on first use ------------------------------------


def _installed_version() -> str | None:
    manifest = BUNDLE.parents[2] / "package.json"
    if not (BUNDLE.exists() and manifest.exists()):
        return None
    return json.loads(manifest.read_text()).get("version")


@pytest.fixture(scope="session")
def analytics_js_bundle() -> Path:
    """The pinned UMD bundle; ``npm ci`` (from package-lock.json) installs it if it is missing."""
    if _installed_version() == PINNED_VERSION:
        return BUNDLE
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm (Node.js 18 or later) is needed to install {PACKAGE} into {PACKAGE_DIR}")
    # One installer at a time: concurrent test runs of this checkout share the folder.
    with open(Path(tempfile.gettempdir()) / "clickstream-analytics-js-npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() != PINNED_VERSION:
            done = subprocess.run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=240,
            )
            assert done.returncode == 0, f"npm ci failed in {PACKAGE_DIR}:\n{done.stdout}\n{done.stderr}"
    assert _installed_version() == PINNED_VERSION, f"npm ci did not install {PACKAGE} {PINNED_VERSION}"
    return BUNDLE


# --- the API, the shop and the browser ------------------------------------------------------------


@dataclass
class Api:
    settings: Settings
    url: str

    @property
    def raw_topic(self) -> str:
        return Topics.from_settings(self.settings).raw

    @property
    def write_key(self) -> str:
        return self.settings.demo_write_key

    @property
    def api_host(self) -> str:
        """What analytics.js calls ``apiHost``: host[:port] and path, without the scheme."""
        return f"{urlsplit(self.url).netloc}/v1"


@pytest.fixture
def api(settings_factory, free_ports, running_api) -> Api:
    """``python -m clickstream api`` (a real uvicorn server) on its own port and topics."""
    settings = settings_factory(api_port=free_ports())
    off_loop(asyncio.run, create_topics(settings))  # Playwright's loop may already run in this thread
    return Api(settings, running_api(settings))


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<script src="{bundle}"></script>
</head><body>
<h1>{title}</h1>
<a id="next" href="{next}">Next</a>
</body></html>
"""


class Site(StaticSite):
    """A shop on its own loopback port, so another origin than the API's: a home page linking to a
    checkout page, both with the analytics.js bundle in a script tag."""

    def __init__(self, bundle: Path):
        html = "text/html; charset=utf-8"
        super().__init__({
            "/": (html, PAGE.format(title="Home", bundle=BUNDLE_PATH, next=CHECKOUT).encode()),
            "/shop/checkout": (html, PAGE.format(title="Checkout", bundle=BUNDLE_PATH, next="/").encode()),
            BUNDLE_PATH: ("application/javascript; charset=utf-8", bundle.read_bytes()),
        })


@pytest.fixture
def site(analytics_js_bundle) -> Iterator[Site]:
    shop = Site(analytics_js_bundle)
    try:
        yield shop
    finally:
        shop.close()


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """Headless Chromium without request interception (so preflights reach the API), that cannot
    reach anything but loopback."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=[*CHROMIUM_ARGS, f"--proxy-server={DEAD_PROXY}"])
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Exchange:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    answer: str


@dataclass
class Wire:
    """What a page sent to the API and was answered (as Playwright saw it), the CORS preflights (as the
    DevTools protocol saw them), and any request for another host."""

    api_url: str
    exchanges: list[Exchange] = field(default_factory=list)
    preflights: list[dict[str, Any]] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext, tab: Page) -> None:
        context.on("request", lambda r: self.outside.append(r.url) if leaves_machine(r.url) else None)
        context.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}: {r.failure}")
                   if r.url.startswith(self.api_url) else None)
        context.on("requestfinished", self._finished)
        cdp = context.new_cdp_session(tab)
        cdp.on("Network.requestWillBeSent", self._maybe_preflight)
        cdp.on("Network.responseReceived", self._preflight_answer)
        cdp.send("Network.enable")

    def _finished(self, request) -> None:
        if request.url.startswith(self.api_url):
            response, data = request.response(), request.post_data
            self.exchanges.append(Exchange(request.method, urlsplit(request.url).path, request.all_headers(),
                                           json.loads(data) if data else None, response.status, response.text()))

    def _maybe_preflight(self, event: dict) -> None:
        if event.get("type") == "Preflight" or event["request"]["method"] == "OPTIONS":
            self.preflights.append({"id": event["requestId"], "url": event["request"]["url"],
                                    "headers": event["request"]["headers"], "status": None, "answer": {}})

    def _preflight_answer(self, event: dict) -> None:
        for p in self.preflights:
            if p["id"] == event["requestId"]:
                p["status"] = event["response"]["status"]
                p["answer"] = {k.lower(): v for k, v in event["response"]["headers"].items()}

    def calls(self, path: str) -> list[dict]:
        """The calls the API accepted on ``path`` (each body's, or each of its batch's)."""
        out = []
        for x in self.exchanges:
            if x.path == path and x.status == 200:
                out.extend(x.body["batch"] if path.endswith("/b") else [x.body])
        return out

    def wait_for(self, tab: Page, predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, (f"timed out waiting for {what}", self.exchanges, self.failed)
            tab.wait_for_timeout(50)  # lets Playwright deliver the network events


def visitor_context(chromium: Browser) -> BrowserContext:
    """A fresh context with desktop Chrome's user agent (headless Chromium's says "HeadlessChrome",
    which the API rightly counts as a bot)."""
    major = chromium.version.split(".")[0]
    return chromium.new_context(user_agent=(
        f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36"))


def open_checkout(tab: Page, site: Site) -> None:
    """Home, then a real navigation to the checkout (whose referrer is then the home page)."""
    tab.goto(f"{site.url}/")
    tab.click("#next")
    tab.wait_for_url(f"{site.url}{CHECKOUT}")
    tab.wait_for_function("typeof window.AnalyticsNext?.AnalyticsBrowser === 'function'")


# Loads analytics.js as a site that sends to its own collector does, and makes one call of each type
# (each awaited: in the standard strategy a call's promise settles once its request was answered).
LOAD_AND_CALL = """async ({writeKey, apiHost, deliveryStrategy, metrics}) => {
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
    // The source's settings as Segment's CDN would serve them, given inline: nothing is fetched.
    {writeKey, cdnSettings: {integrations: {'Segment.io': {apiKey: writeKey}}, metrics}},
    // Segment's documented way to send elsewhere: apiHost is host[:port]/path, without the scheme.
    {integrations: {'Segment.io': {apiHost, protocol: 'http', ...(deliveryStrategy ? {deliveryStrategy} : {})}}},
  );
  window.analytics = analytics;
  const sent = [];
  for (const call of [
    () => analytics.page(),
    () => analytics.track('Order Completed', {revenue: 42.5, currency: 'EUR'}),
    // Before identify(): analytics.js 1.84 sets every call's userId to the identified user's, an
    // alias's too; so the anonymous visitor is aliased to the new user id first (alias, then identify).
    () => analytics.alias('user-7'),
    () => analytics.identify('user-7', {plan: 'pro'}),
    () => analytics.group('acme', {name: 'Acme', employees: 12}),
    () => analytics.screen('Receipt', {order: 'o-1'}),
  ]) {
    const ctx = await call();
    const failure = ctx.failedDelivery();
    sent.push({type: ctx.event.type, messageId: ctx.event.messageId, failed: failure ? String(failure.reason) : null});
  }
  return {
    sent,
    anonymousId: analytics.user().anonymousId(),
    storedAnonymousId: JSON.parse(localStorage.getItem('ajs_anonymous_id')),
    cookie: document.cookie,
  };
}"""
CALL_TYPES = ["page", "track", "alias", "identify", "group", "screen"]


def load_and_call(tab: Page, api: Api, delivery_strategy: dict | None = None,
                  metrics: dict | None = None) -> dict:
    # Segment's CDN settings sample the telemetry; without them analytics.js sends all of it.
    return tab.evaluate(LOAD_AND_CALL, {"writeKey": api.write_key, "apiHost": api.api_host,
                                        "deliveryStrategy": delivery_strategy,
                                        "metrics": metrics if metrics is not None else {"sampleRate": 0}})


def read_events(read_topic, api: Api, expected: int) -> list[Event]:
    records = off_loop(read_topic, api.settings.bootstrap_servers, api.raw_topic, expected, 20.0)
    return [Event.from_bytes(r.value) for r in records]


# --- checks -----------------------------------------------------------------------------------------


def check_requests(wire: Wire, api: Api, site: Site) -> None:
    """Every request to the API was accepted and carried the write key; each URL was preflighted once
    and the API's answer let the request through; nothing tried to leave the machine."""
    assert wire.outside == [] and wire.failed == []
    for x in wire.exchanges:
        assert x.method == "POST" and x.status == 200 and json.loads(x.answer)["success"] is True, (
            x.path, x.status, x.answer)
        assert x.headers["content-type"] == "text/plain", x.headers
        assert x.headers["authorization"].startswith("Basic ")
        assert x.headers["origin"] == site.url
        assert x.body["writeKey"] == api.write_key
    # One preflight per URL: the answer's Access-Control-Max-Age lets the browser reuse it.
    assert sorted(urlsplit(p["url"]).path for p in wire.preflights) == sorted({x.path for x in wire.exchanges})
    for p in wire.preflights:
        # text/plain is a CORS-safelisted content type: only the Authorization header needs leave.
        assert p["headers"]["Access-Control-Request-Method"] == "POST", p
        assert p["headers"]["Access-Control-Request-Headers"] == "authorization", p
        assert p["status"] == 200, p
        assert p["answer"]["access-control-allow-origin"] in ("*", site.url), p
        assert "authorization" in p["answer"]["access-control-allow-headers"].lower(), p
        assert "POST" in p["answer"]["access-control-allow-methods"], p


def check_events(events: list[Event], result: dict, api: Api, site: Site) -> None:
    """Each call arrived once, as analytics.js made it, from the checkout page."""
    assert sorted(e.type for e in events) == sorted(CALL_TYPES), [(e.type, e.event) for e in events]
    by_type = {e.type: e for e in events}
    # Each event is the call analytics.js made: its messageId is the event id.
    assert {e.type: e.event_id for e in events} == {s["type"]: s["messageId"] for s in result["sent"]}
    assert all(s["messageId"].startswith("ajs-next-") for s in result["sent"])

    anonymous_id = result["anonymousId"]
    assert anonymous_id and anonymous_id == result["storedAnonymousId"]
    assert f"{ANONYMOUS_ID_KEY}={anonymous_id}" in result["cookie"]
    assert {e.anonymous_id for e in events} == {anonymous_id}

    page_view, order = by_type["page"], by_type["track"]
    assert page_view.event is None and page_view.user_id is None  # a page() with no name, before identify()
    assert order.event == "Order Completed" and order.user_id is None
    assert order.properties == {"revenue": 42.5, "currency": "EUR"} and order.traits == {}
    identify, group, screen, alias = by_type["identify"], by_type["group"], by_type["screen"], by_type["alias"]
    assert (identify.user_id, identify.traits) == ("user-7", {"plan": "pro"})
    assert (group.user_id, group.group_id, group.traits) == ("user-7", "acme", {"name": "Acme", "employees": 12})
    assert (screen.user_id, screen.event, screen.properties) == ("user-7", "Receipt", {"order": "o-1"})
    assert (alias.user_id, alias.previous_id) == ("user-7", anonymous_id)

    url = f"{site.url}{CHECKOUT}"
    for e in events:
        assert (e.url, e.host, e.path, e.query) == (url, "127.0.0.1", "/shop/checkout", urlsplit(url).query), e.type
        assert (e.referrer, e.referrer_host, e.title) == (f"{site.url}/", "127.0.0.1", "Checkout"), e.type
        assert (e.utm_source, e.utm_medium, e.utm_campaign) == ("newsletter", "email", "spring"), e.type
        assert e.context["library"] == LIBRARY, e.context["library"]
        assert e.context["page"]["url"] == url and e.context["page"]["path"] == "/shop/checkout"
        assert e.context["campaign"] == {"source": "newsletter", "medium": "email", "name": "spring"}
        assert (e.browser, e.os, e.device_type, e.is_bot) == ("Chrome", "Linux", "desktop", False), e.context
        assert e.source == "demo" and e.sent_at is not None and e.ip == "127.0.0.0"
        assert api.write_key not in e.to_bytes().decode()  # the write key is not kept
    # page() copies the page's fields into its properties too.
    assert {k: page_view.properties[k] for k in ("path", "url", "title", "referrer", "search")} == {
        "path": "/shop/checkout", "url": url, "title": "Checkout", "referrer": f"{site.url}/",
        "search": "?" + urlsplit(url).query}


# --- tests ----------------------------------------------------------------------------------------


def test_analytics_js_standard_delivery_reaches_the_raw_topic(api, site, chromium, read_topic):
    context = visitor_context(chromium)
    tab = context.new_page()
    wire = Wire(api.url)
    wire.attach(context, tab)
    open_checkout(tab, site)

    result = load_and_call(tab, api)
    assert [(s["type"], s["failed"]) for s in result["sent"]] == [(t, None) for t in CALL_TYPES]
    wire.wait_for(tab, lambda: len(wire.exchanges) >= len(CALL_TYPES), "one request per call")
    check_requests(wire, api, site)
    # One request per call, on the call type's one-letter path, the type in the body too.
    assert sorted((x.path, x.body["type"]) for x in wire.exchanges) == sorted(
        (CALL_PATHS[t], t) for t in CALL_TYPES)
    for x in wire.exchanges:
        assert {"type", "messageId", "anonymousId", "timestamp", "sentAt", "context", "writeKey", "integrations",
                "_metadata"} <= set(x.body), sorted(x.body)

    check_events(read_events(read_topic, api, expected=len(CALL_TYPES)), result, api, site)
    context.close()


def test_analytics_js_batching_delivery_reaches_the_raw_topic(api, site, chromium, read_topic):
    context = visitor_context(chromium)
    tab = context.new_page()
    wire = Wire(api.url)
    wire.attach(context, tab)
    open_checkout(tab, site)

    result = load_and_call(tab, api, {"strategy": "batching", "config": {"size": 2, "timeout": 500}})
    # A batched call's promise settles when it is queued: its delivery shows on the wire.
    assert [s["type"] for s in result["sent"]] == CALL_TYPES
    wire.wait_for(tab, lambda: len(wire.calls("/v1/b")) >= len(CALL_TYPES), "the batches")
    check_requests(wire, api, site)
    assert {x.path for x in wire.exchanges} == {"/v1/b"}
    # The second call fills the first batch; the rest leave together when the 500 ms timer fires
    # (or two by two, if the first request was already answered).
    batches = [[c["type"] for c in x.body["batch"]] for x in wire.exchanges]
    assert batches[0] == ["page", "track"] and len(batches) >= 2, batches
    assert sorted(c["messageId"] for c in wire.calls("/v1/b")) == sorted(s["messageId"] for s in result["sent"])
    for x in wire.exchanges:
        assert set(x.body) == {"writeKey", "batch", "sentAt"}
        answer = json.loads(x.answer)
        assert answer["accepted"] == len(x.body["batch"]) and answer["rejected"] == [], answer
        for call in x.body["batch"]:  # each call keeps its writeKey; the batch's sentAt applies to all
            assert call["writeKey"] == api.write_key and "sentAt" not in call

    check_events(read_events(read_topic, api, expected=len(CALL_TYPES)), result, api, site)
    context.close()


def test_analytics_js_telemetry_is_accepted(api, site, chromium):
    """Unless the source's settings sample it away, analytics.js posts counters of its own calls to
    ``{apiHost}/m`` every 30 s: ``{"series": [{"type": "Counter", "metric": "analytics_js.invoke",
    "value": 1, "tags": {...}}]}``, as text/plain, with neither write key nor Authorization (a simple
    request: no preflight). Segment's API accepts it; so does ours (it counts and drops it), sparing
    every visitor's browser a failed request every 30 s."""
    context = visitor_context(chromium)
    tab = context.new_page()
    wire = Wire(api.url)
    wire.attach(context, tab)
    open_checkout(tab, site)

    load_and_call(tab, api, metrics={"flushTimer": 300})  # the library's defaults, every 300 ms instead of 30 s
    wire.wait_for(tab, lambda: any(x.path == "/v1/m" for x in wire.exchanges), "the telemetry request")
    telemetry = next(x for x in wire.exchanges if x.path == "/v1/m")
    assert telemetry.method == "POST" and telemetry.headers["content-type"] == "text/plain"
    assert "authorization" not in telemetry.headers and "writeKey" not in telemetry.body
    assert telemetry.body["series"][0]["metric"] == "analytics_js.invoke", telemetry.body
    assert telemetry.body["series"][0]["tags"]["library"] == "analytics.js", telemetry.body
    context.close()
    assert telemetry.status == 200, (telemetry.status, telemetry.answer)
