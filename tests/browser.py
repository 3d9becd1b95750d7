"""Headless Chromium for browser tests: Debian's ``chromium`` driven by Playwright.

Use the fixtures by importing them into a test module::

    from browser import browser, page  # noqa: F401  (pytest fixtures)

Playwright's sync API runs its event loop in a greenlet, and while Playwright is started that loop
counts as running in the test's thread, so ``asyncio.run`` fails there ("cannot be called from a
running event loop"). Hence Playwright is started for each test and stopped after it (a
session-wide instance would break every later test that uses asyncio; starting it costs about
half a second), and :func:`off_loop` runs asyncio-based helpers such as ``read_topic`` during a test.

Every context made here aborts requests to hosts other than loopback, so nothing a test page does
leaves the machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

# `playwright install` cannot download browsers here; Debian's build is used instead.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

T = TypeVar("T")


def leaves_machine(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOOPBACK_HOSTS


def isolated_context(browser: Browser, **options: Any) -> BrowserContext:
    """A new browser context (its own storage and cookies) that can reach loopback only."""
    context = browser.new_context(**options)
    context.route(leaves_machine, lambda route: route.abort())
    return context


def off_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``function`` in a worker thread: for code that uses ``asyncio.run`` while Playwright runs."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot of ``page`` as ``test-artifacts/<name>.png`` (the folder is git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless Chromium, for tests that need several contexts (use :func:`isolated_context`)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh, loopback-only context."""
    context = isolated_context(browser)
    try:
        yield context.new_page()
    finally:
        context.close()


class StaticSite:
    """Files served on their own loopback port (so another origin than the API's): ``{path: (type, bytes)}``."""

    def __init__(self, files: dict[str, tuple[str, bytes]]):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                kind, body = files.get(self.path.split("?", 1)[0], ("text/plain", None))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", kind)
                self.end_headers()
                self.wfile.write(body if body is not None else b"not found")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
