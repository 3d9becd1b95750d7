"""The dashboard's one lake connection and its short-lived result cache.

Every page asks through :func:`cached`: results are kept ``CACHE_TTL_S`` seconds per set of
arguments (Streamlit's ``st.cache_data``), and the views are re-listed at most every
``REFRESH_S`` seconds, so new objects of the lake appear without a restart. A DuckDB connection
must not be used by two threads at once and Streamlit runs each browser session in its own
thread, hence the lock.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import streamlit as st

from clickstream.settings import Settings, load_settings
from clickstream.sources import demo_write_key
from query.engine import ViewCache, connect, refresh_views

CACHE_TTL_S = 15
SLOW_TTL_S = 600
REFRESH_S = 5.0


class LakeConnection:
    """A sandboxed DuckDB connection over the lake (``query.engine.connect``), shared by every session."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.views = ViewCache()
        self.con = connect(settings, self.views)
        self.lock = threading.Lock()
        self.refreshed = time.monotonic()

    def run(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            if time.monotonic() - self.refreshed > REFRESH_S:
                refresh_views(self.con, self.settings, self.views)
                self.refreshed = time.monotonic()
            return function(self.con, *args, **kwargs)


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    return load_settings()


@st.cache_resource(show_spinner=False)
def lake() -> LakeConnection:
    return LakeConnection(settings())


def _resolve(name: str) -> Callable:
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=500)
def cached(name: str, *args: Any, **kwargs: Any) -> Any:
    """``function(connection, *args, **kwargs)`` for ``name`` = ``"module:function"``, cached briefly.

    The function is named by text so that the cache key is plain and the query modules stay free
    of Streamlit.
    """
    return lake().run(_resolve(name), *args, **kwargs)


@st.cache_data(ttl=SLOW_TTL_S, show_spinner=False)
def cached_slow(name: str, *args: Any, **kwargs: Any) -> Any:
    """:func:`cached` for answers that change rarely and cost a full scan (the sidebar's list of sources)."""
    return lake().run(_resolve(name), *args, **kwargs)


def load(name: str, *args: Any, slow: bool = False, **kwargs: Any) -> Any:
    """:func:`cached` (or :func:`cached_slow`), but a failure is shown in the page (never as a traceback) and stops it."""
    try:
        return (cached_slow if slow else cached)(name, *args, **kwargs)
    except Exception as exc:  # QueryError, DuckDB's IO errors on an unreachable lake, bad input
        fail(f"Cannot read the lake: {exc}")


def fail(message: str) -> NoReturn:
    st.error(message)
    st.stop()


def no_events_yet(s: Settings) -> None:
    """The empty state of every page: how to send a first event."""
    st.info(
        "No events yet. Send one with:\n\n"
        f"```\ncurl -u {demo_write_key(s)}: -H 'Content-Type: application/json' "
        f"-d '{{\"anonymousId\":\"a1\",\"name\":\"Home\",\"properties\":{{\"path\":\"/\"}}}}' "
        f"{s.url(s.api_port)}/v1/page\n```\n"
        f"Events reach the lake within about {s.flush_interval_s:.0f} s."
    )
