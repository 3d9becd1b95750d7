"""The Streamlit dashboard: event count and page views over time, from the lake.

Run by ``clickstream dashboard`` (``streamlit run`` on this file); the settings
come from the same ``CLICKSTREAM_*`` environment as every other service.
"""

from __future__ import annotations

import streamlit as st

from clickstream.settings import load_settings
from clickstream.sources import demo_write_key
from dashboard.data import load
from query.engine import connect

st.set_page_config(page_title="clickstream", layout="wide")


@st.cache_resource
def _settings():
    return load_settings()


@st.cache_resource
def _connection():
    return connect(_settings())


@st.cache_data(ttl=5, show_spinner=False)
def _load():
    return load(_connection(), _settings())


settings = _settings()
st.title("clickstream")
try:
    summary, minutes, pages = _load()
except Exception as exc:  # QueryError or an unreachable lake: shown in the page, never as a traceback
    st.error(f"Cannot read the lake: {exc}")
    st.stop()

if not summary["events"]:
    st.info(
        "No events yet. Send one with:\n\n"
        f"```\ncurl -u {demo_write_key(settings)}: -H 'Content-Type: application/json' "
        f"-d '{{\"anonymousId\":\"a1\",\"name\":\"Home\",\"properties\":{{\"path\":\"/\"}}}}' "
        f"{settings.url(settings.api_port)}/v1/page\n```\n"
        f"Events reach the lake within about {settings.flush_interval_s:.0f} s."
    )
    st.stop()

cols = st.columns(4)
cols[0].metric("Events", f"{summary['events']:,}")
cols[1].metric("Page views", f"{summary['page_views']:,}")
cols[2].metric("Visitors", f"{summary['visitors']:,}")
cols[3].metric("Sessions", f"{summary['sessions']:,}")
st.caption(f"Last event at {summary['last_event']:%Y-%m-%d %H:%M:%S} UTC")

st.subheader("Events and page views per minute")
st.bar_chart(minutes, x="minute", y=["events", "page_views"], stack=False)
st.subheader("Top pages")
st.dataframe(pages, hide_index=True, width="stretch")
