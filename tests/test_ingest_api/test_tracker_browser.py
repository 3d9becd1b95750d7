"""The browser tracker (``GET /tracker.js``) in headless Chromium, against ``clickstream api`` running
for real on the session's Tansu broker: a test site on another loopback origin loads the script with
one tag; what the visitor does is read back from ``clickstream.raw``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from browser import StaticSite, browser, isolated_context, off_loop, page, screenshot  # noqa: F401  (fixtures)
from conftest import api_log

from clickstream.events import Event
from clickstream.kafka import create_topics
from clickstream.settings import Settings
from clickstream.topics import Topics
from ingest_api.tracker import SCRIPT_PATH, strip_script

pytestmark = pytest.mark.integration

ANONYMOUS_ID_KEY = "clickstream.anonymousId"
OUTBOUND = "https://docs.example.com/start?ref=site"


@dataclass
class Api:
    settings: Settings
    url: str
    log: Path

    @property
    def raw_topic(self) -> str:
        return Topics.from_settings(self.settings).raw


@pytest.fixture
def api(settings_factory, free_ports, running_api, tmp_path) -> Api:
    """``clickstream api`` in a subprocess, on its own topics."""
    settings = settings_factory(api_port=free_ports())
    off_loop(asyncio.run, create_topics(settings))  # Playwright's loop may already run in this thread
    url = running_api(settings)
    return Api(settings, url, api_log(tmp_path, settings))


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<script src="{src}" data-write-key="{key}" {options} async></script>
<style>body {{ font-family: sans-serif; margin: 2em; }} a, button {{ display: block; margin: .5em 0; }}</style>
</head><body>
<h1>{title}</h1>
<a id="next" href="{next}">Go to {next}</a>
<button id="compare" onclick="history.pushState({{}}, '', '/products/compare?sku=42')">Compare</button>
<a id="pricing" href="/pricing" data-clickstream="Pricing CTA">See pricing</a>
<a id="docs" href="{outbound}">Read the docs</a>
<script>
  // A router link, as single-page apps have: the page changes its URL itself.
  document.getElementById('pricing').addEventListener('click', (e) => {{
    e.preventDefault();
    history.pushState({{}}, '', e.currentTarget.href);
  }});
</script>
</body></html>
"""


class Site(StaticSite):
    """A two-page test site on its own loopback port: another origin than the API's, so CORS applies.

    ``self_hosted`` serves a copy of the script from the site itself (as sites do to keep it
    first-party); the tag then names the API with ``data-api-host``.
    """

    def __init__(self, api: Api, options: str = "", self_hosted: bool = False):
        src = f"{api.url}/tracker.js"
        html = "text/html; charset=utf-8"
        files = {}
        if self_hosted:
            files["/assets/tracker.js"] = ("application/javascript", httpx.get(src).content)
            src, options = "/assets/tracker.js", f'data-api-host="{api.url}" {options}'
        fill = dict(src=src, key=api.settings.demo_write_key, options=options, outbound=OUTBOUND)
        files["/"] = (html, PAGE.format(title="Home", next="/products", **fill).encode())
        files["/products"] = (html, PAGE.format(title="Products", next="/", **fill).encode())
        super().__init__(files)


@pytest.fixture
def site():
    sites = []

    def make(api: Api, options: str = "", self_hosted: bool = False) -> Site:
        sites.append(Site(api, options, self_hosted))
        return sites[-1]

    yield make
    for s in sites:
        s.close()


def open_page(page, url: str) -> None:
    """Go to ``url`` and wait until the tracker ran (its first page view is then on its way)."""
    page.goto(url)
    page.wait_for_function("window.clickstream && window.clickstream.version")


def read_events(read_topic, api: Api, expected: int) -> list[Event]:
    records = off_loop(read_topic, api.settings.bootstrap_servers, api.raw_topic, expected, 20.0)
    events = [Event.from_bytes(r.value) for r in records]
    assert len(events) == expected, (
        [(e.type, e.event, e.path) for e in events], api.log.read_text()[-3000:])
    return events


def test_page_views_clicks_and_ids_reach_the_raw_topic(api, site, page, read_topic):
    served = httpx.get(f"{api.url}/tracker.js")
    assert served.status_code == 200 and served.headers["content-type"].startswith("application/javascript")
    assert len(served.content) < 5 * 1024, len(served.content)
    assert "max-age" in served.headers["cache-control"]
    assert httpx.get(f"{api.url}/tracker.js", headers={"If-None-Match": served.headers["etag"]}).status_code == 304

    home = site(api)
    open_page(page, f"{home.url}/")
    page.click("#next")  # a real navigation: the document's referrer is the home page
    page.wait_for_url(f"{home.url}/products")
    page.wait_for_function("window.clickstream && window.clickstream.version")
    page.click("#compare")  # history.pushState
    page.wait_for_url("**/products/compare?sku=42")
    page.click("#pricing")  # marked with data-clickstream; its router handler pushes /pricing
    page.wait_for_url("**/pricing")
    stored_id = page.evaluate(f"localStorage.getItem('{ANONYMOUS_ID_KEY}')")
    screenshot(page, "tracker-test-page")
    page.click("#docs")  # outbound: the browser context aborts it, the beacon is sent before leaving

    events = read_events(read_topic, api, expected=6)
    pages = {e.path: e for e in events if e.type == "page"}
    tracks = {e.event: e for e in events if e.type == "track"}
    assert set(pages) == {"/", "/products", "/products/compare", "/pricing"}
    assert set(tracks) == {"Element Clicked", "Outbound Link Clicked"}

    assert pages["/"].referrer is None  # typed in
    assert pages["/products"].referrer == f"{home.url}/"
    # After a history API navigation the referrer is the previous page view's URL.
    assert pages["/products/compare"].referrer == f"{home.url}/products"
    assert pages["/products/compare"].query == "sku=42"
    assert pages["/pricing"].referrer == f"{home.url}/products/compare?sku=42"
    assert (pages["/"].title, pages["/products"].title, pages["/products"].url) == (
        "Home", "Products", f"{home.url}/products")

    assert stored_id and {e.anonymous_id for e in events} == {stored_id}
    sessions = {e.context.get("sessionId") for e in events}
    assert len(sessions) == 1 and None not in sessions
    assert all(e.source == "demo" and e.context["library"]["name"] == "clickstream-tracker" for e in events)
    assert all(e.user_id is None for e in events)

    clicked = tracks["Element Clicked"]
    assert clicked.properties == {"element": "Pricing CTA", "text": "See pricing", "tag": "a", "id": "pricing",
                                  "href": f"{home.url}/pricing"}
    assert clicked.path == "/products/compare"  # clicked there, before the router moved on
    assert tracks["Outbound Link Clicked"].properties == {"href": OUTBOUND, "text": "Read the docs"}
    assert tracks["Outbound Link Clicked"].path == "/pricing"


PRIVACY_SIGNALS = {
    "navigator.doNotTrack": "Object.defineProperty(navigator, 'doNotTrack', {get: () => '1'})",
    "window.doNotTrack": "Object.defineProperty(window, 'doNotTrack', {get: () => '1'})",
    "navigator.globalPrivacyControl": "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})",
}


def test_do_not_track_and_global_privacy_control_send_and_store_nothing(api, site, browser, read_topic):
    home = site(api)
    sent = []
    for signal, init_script in PRIVACY_SIGNALS.items():
        context = isolated_context(browser)
        context.on("request", lambda r: sent.append(r.url) if "/v1/" in r.url else None)
        context.add_init_script(init_script)
        tab = context.new_page()
        open_page(tab, f"{home.url}/")
        tab.click("#compare")
        tab.click("#pricing")
        tab.evaluate("clickstream.track('Manual Call', {x: 1}); clickstream.identify('u1')")
        assert tab.evaluate("localStorage.length + sessionStorage.length + document.cookie.length") == 0, signal
        tab.click("#docs")
        context.close()
        assert sent == [], signal

    # A visitor without the signals, afterwards: their page view arrives, and nothing else did.
    context = isolated_context(browser)
    tab = context.new_page()
    open_page(tab, f"{home.url}/")
    [event] = read_events(read_topic, api, expected=1)
    assert event.anonymous_id == tab.evaluate(f"localStorage.getItem('{ANONYMOUS_ID_KEY}')")
    context.close()


def test_memory_only_mode_stores_nothing_and_still_sends(api, site, page, read_topic):
    home = site(api, options='data-storage="memory"')
    open_page(page, f"{home.url}/")
    page.click("#compare")
    page.wait_for_url("**/products/compare?sku=42")
    page.evaluate("clickstream.identify('user-7', {plan: 'pro'}); clickstream.track('Plan Viewed', {plan: 'pro'})")
    assert page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]") == [0, 0, ""]
    assert page.context.cookies() == []
    page.click("#next")  # a new page load: nothing was kept, so a new visitor
    page.wait_for_url(f"{home.url}/products")
    page.wait_for_function("window.clickstream && window.clickstream.version")
    assert page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]") == [0, 0, ""]

    events = read_events(read_topic, api, expected=5)
    [second] = [e for e in events if e.path == "/products"]
    first = [e for e in events if e is not second]
    assert sorted((e.type, e.path) for e in first) == [
        ("identify", "/products/compare"), ("page", "/"), ("page", "/products/compare"),
        ("track", "/products/compare")]
    assert len({e.anonymous_id for e in first}) == 1 and first[0].anonymous_id
    assert len({e.context["sessionId"] for e in first}) == 1
    assert [e.user_id for e in first if e.type in ("identify", "track")] == ["user-7", "user-7"]
    assert [e.traits for e in first if e.type == "identify"] == [{"plan": "pro"}]
    assert second.referrer == f"{home.url}/products/compare?sku=42"
    assert second.anonymous_id and second.anonymous_id != first[0].anonymous_id
    assert second.context["sessionId"] != first[0].context["sessionId"] and second.user_id is None


def test_options_manual_page_views_own_copy_of_the_script_and_fetch_fallback(api, site, page, read_topic):
    # A beacon the browser cannot queue (its quota is full) leaves the call to fetch with keepalive.
    page.add_init_script("navigator.sendBeacon = () => false")
    home = site(api, options='data-auto-page="false"', self_hosted=True)
    open_page(page, f"{home.url}/")
    page.click("#compare")  # no automatic page views: the history API is left alone
    with page.expect_response(lambda r: r.url == f"{api.url}/v1/page") as response:
        page.evaluate("clickstream.page('Compare', {section: 'catalog'})")
    assert response.value.status == 200 and response.value.request.resource_type == "fetch"
    page.click("#pricing")  # clicks are still tracked

    events = read_events(read_topic, api, expected=2)
    [viewed] = [e for e in events if e.type == "page"]
    [clicked] = [e for e in events if e.type == "track"]
    assert (viewed.event, viewed.path, viewed.query) == ("Compare", "/products/compare", "sku=42")
    assert viewed.referrer is None  # the first page view: the document's referrer, and it was typed in
    assert viewed.properties["section"] == "catalog"
    assert clicked.event == "Element Clicked" and clicked.properties["element"] == "Pricing CTA"


def test_session_ends_after_30_minutes_without_events(page):
    """The rule is the tracker's own: a route plays the API (and the site), and the calls are read in the browser."""
    api_url = "http://127.0.0.1:9"  # nothing listens there: every request to it is answered by the route
    script = strip_script(SCRIPT_PATH.read_text())

    def fake_api(route):
        if route.request.url.endswith("/tracker.js"):
            route.fulfill(body=script, content_type="application/javascript")
        elif route.request.url.endswith("/site"):
            tag = f'<script src="{api_url}/tracker.js" data-write-key="k"></script>'
            route.fulfill(body=tag, content_type="text/html")
        else:
            route.fulfill(json={"success": True})

    def call(action) -> dict:
        with page.expect_request(lambda r: "/v1/" in r.url) as request:
            action()
        return request.value.post_data_json

    page.route(f"{api_url}/**", fake_api)
    page.clock.install()
    calls = [call(lambda: open_page(page, f"{api_url}/site"))]
    # 58 minutes of activity with gaps under 30 minutes are one session; a gap of over 30 minutes ends it.
    for event, idle in (("Within", "29:00"), ("Still within", "29:00"), ("After", "30:01")):
        page.clock.fast_forward(idle)
        calls.append(call(partial(page.evaluate, "(event) => clickstream.track(event)", event)))

    assert [c.get("event", c["type"]) for c in calls] == ["page", "Within", "Still within", "After"]
    sessions = [c["context"]["sessionId"] for c in calls]
    assert sessions[0] == sessions[1] == sessions[2] != sessions[3]
    assert len({c["anonymousId"] for c in calls}) == 1
