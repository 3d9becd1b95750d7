"""End to end: ``clickstream dashboard`` (a real Streamlit server) on the demo lake, every page opened in
headless Chromium; no page may show an exception or an error alert. A screenshot of each page is saved
under test-artifacts/ (dashboard-<page>.png)."""

import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from playwright.sync_api import Page

from browser import page, browser, screenshot  # noqa: F401  (pytest fixtures)
from clickstream.settings import Settings
from clickstream.stack.probes import free_port, http_ok
from conftest import stop_process, wait_until
from demo_lake import write_demo_lake

PAGES = {"live": "Live", "traffic": "Traffic", "funnels": "Funnels", "paths": "Paths", "retention": "Retention",
         "experiments": "Experiments", "reactions": "Reactions", "health": "Pipeline health", "sql": "SQL"}
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


@pytest.fixture
def running_dashboard(tmp_path, write_lake):
    """The demo lake in a local directory and the dashboard started as users start it; Kafka unreachable."""
    port = free_port()
    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake", dashboard_port=port, state_dir=tmp_path / "state",
                        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", demo_write_key="wk_browser")
    write_demo_lake(settings, write_lake, datetime.now(timezone.utc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env.update(settings.as_env())
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "clickstream", "dashboard"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = settings.url(port)
    try:
        wait_until(lambda: process.poll() is not None or http_ok(url + "/_stcore/health"), 60, "the dashboard")
        assert process.poll() is None, log.read_text()[-3000:]
        yield url
    finally:
        stop_process(process)


def wait_for_render(page: Page, title: str, timeout_s: float = 45) -> None:
    """Until the page's title is drawn and the script has been idle (no "Running" status) for a second."""
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=timeout_s * 1000)
    deadline, idle_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count():
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > 1.0:
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"{title} did not finish rendering in {timeout_s} s")


def test_every_page_loads_without_errors(running_dashboard, page):
    page.set_viewport_size({"width": 1400, "height": 1000})
    for path, title in PAGES.items():
        page.goto(f"{running_dashboard}/{path}")
        wait_for_render(page, title)
        screenshot(page, f"dashboard-{path}")
        errors = page.locator(ERRORS)
        assert errors.count() == 0, f"{path}: {errors.first.inner_text()}"
        if path == "traffic":
            assert page.get_by_test_id("stMetricValue").first.inner_text() == "4"  # visitors of the demo lake
        if path == "health":
            assert page.get_by_text("Kafka is unreachable").count() == 1
