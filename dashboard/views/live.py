"""Live: the last 30 minutes of the processor's 10-second and 1-minute metrics, refreshed every few seconds."""

from datetime import datetime, timezone

import streamlit as st

from dashboard import charts
from dashboard.filters import current_range
from dashboard.lake import cached, no_events_yet, settings

MINUTES = 30
REFRESH_S = 5

st.title("Live")
st.caption(f"The last {MINUTES} minutes of the stream processor's windowed metrics, refreshed every "
           f"{REFRESH_S} s. The date range and bot filters do not apply here (the metrics count every event); "
           "the source filter does.")


@st.fragment(run_every=REFRESH_S)
def live() -> None:
    now = datetime.now(timezone.utc)
    # Rounded, so that every session within the same few seconds shares the cached answers.
    tick = now.replace(second=now.second // REFRESH_S * REFRESH_S, microsecond=0)
    source = current_range().source
    try:
        figures = cached("query.live:now_figures", tick, MINUTES, source)
        series = cached("query.live:series", tick, MINUTES, source)
        pages = cached("query.live:top_pages_now", tick, 5, source)
        reactions = cached("query.live:latest_reactions", tick, MINUTES)
    except Exception as exc:
        st.error(f"Cannot read the metrics: {exc}")
        return
    if figures["events_window"] is None and figures["visitors_window"] is None:
        st.info(f"No metrics in the last {MINUTES} minutes. The stream processor writes them to the `metrics` "
                "table as windows close; check the Pipeline health page if events are being sent.")
        if cached("query.traffic:last_event_time") is None:
            no_events_yet(settings())
        return
    cols = st.columns(3)
    cols[0].metric("Events/s", "-" if figures["events_per_s"] is None else f"{figures['events_per_s']:,.1f}",
                   help="Events of the newest closed 10-second window, per second")
    cols[1].metric("Active visitors", "-" if figures["active_visitors"] is None else f"{figures['active_visitors']:,.0f}",
                   help="Distinct visitors of the newest closed 1-minute window")
    cols[2].metric("Active sessions", "-" if figures["active_sessions"] is None else f"{figures['active_sessions']:,.0f}",
                   help="Sessions with an event in the newest closed 1-minute window")
    newest = figures["events_window"] or figures["visitors_window"]
    st.caption(f"Newest window started {newest:%H:%M:%S} UTC")
    left, right = st.columns(2)
    fast = series[series["window_s"] == 10]
    slow = series[series["window_s"] == 60]
    if len(fast):
        left.plotly_chart(charts.line(fast, "window_start", "events_per_s", "Events per second (10 s windows)"),
                          key="events_per_s")
    if len(slow):
        right.plotly_chart(charts.line(slow, "window_start", "unique_visitors", "Visitors per minute"),
                           key="visitors")
    left, right = st.columns(2)
    left.subheader("Top pages, last 5 minutes")
    left.dataframe(pages, hide_index=True, width="stretch")
    right.subheader("Latest reactions")
    if len(reactions):
        right.dataframe(reactions, hide_index=True, width="stretch")
    else:
        right.caption(f"No rule fired in the last {MINUTES} minutes.")


live()
