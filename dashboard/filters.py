"""The global filters (sidebar): date range, source and bots, kept in ``st.session_state``.

Widgets of the entry script are drawn on every page, so their state follows the visitor from
page to page; :func:`current_range` turns them into the ``query.analyses.Range`` the queries take.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import streamlit as st

from query.analyses import Range

ALL_SOURCES = "All sources"
DEFAULT_DAYS = 7


def range_of(first: date, last: date, source: str | None, exclude_bots: bool) -> Range:
    """Whole UTC days ``first``..``last`` (both included)."""
    since = datetime.combine(first, time(), timezone.utc)
    until = datetime.combine(last + timedelta(days=1), time(), timezone.utc)
    return Range(since, until, source=source, exclude_bots=exclude_bots)


def default_dates(last_event: datetime | None, today: date) -> tuple[date, date]:
    """The week up to the newest event (so a lake with old data opens on it), else up to today."""
    last = last_event.date() if last_event is not None else today
    return last - timedelta(days=DEFAULT_DAYS - 1), last


def sidebar(sources: list[str], last_event: datetime | None) -> Range:
    """Draw the filters and return the range they select (also kept as ``st.session_state.range``)."""
    today = datetime.now(timezone.utc).date()
    if "date_range" not in st.session_state:
        st.session_state.date_range = default_dates(last_event, today)
    st.sidebar.header("Filters")
    picked = st.sidebar.date_input("Date range (UTC)", key="date_range")
    # While the visitor is picking, the widget holds only the first day.
    first, last = (picked[0], picked[-1]) if isinstance(picked, (tuple, list)) and picked else (picked, picked)
    source = st.sidebar.selectbox("Source", [ALL_SOURCES] + sources, key="source",
                                  help="Events of one source (write key) only")
    exclude_bots = st.sidebar.checkbox("Exclude bots", key="exclude_bots",
                                       help="Leave out events whose user agent is a robot's")
    st.session_state.range = range_of(first, last, None if source == ALL_SOURCES else source, exclude_bots)
    return st.session_state.range


def current_range() -> Range:
    return st.session_state.range
