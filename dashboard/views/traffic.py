"""Traffic: visitors, sessions, page views, bounce rate and session length over the range; where
visitors come from and what they use."""

import streamlit as st

from dashboard import charts
from dashboard.filters import current_range
from dashboard.lake import load, no_events_yet, settings

st.title("Traffic")
r = current_range()
bucket = st.segmented_control("By", ["day", "hour"], default="day", key="traffic_bucket") or "day"

overview = load("query.traffic:overview", r, bucket, 10)
kpis = overview["summary"]
if not kpis["events"]:
    if load("query.traffic:last_event_time") is None:
        no_events_yet(settings())
    else:
        st.info("No events in the selected range and filters: widen the date range in the sidebar.")
    st.stop()


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s"


cols = st.columns(5)
cols[0].metric("Visitors", f"{kpis['visitors']:,}")
cols[1].metric("Sessions", f"{kpis['sessions']:,}")
cols[2].metric("Page views", f"{kpis['page_views']:,}")
cols[3].metric("Bounce rate", "-" if kpis["bounce_rate"] is None else f"{kpis['bounce_rate']:.1%}",
               help="Sessions with at most one page view")
cols[4].metric("Avg. session", duration(kpis["avg_session_s"]), help="First to last event of a session")

over_time, sessions = overview["over_time"], overview["sessions_over_time"]
left, right = st.columns(2)
left.plotly_chart(charts.line(over_time, "bucket", ["visitors", "sessions", "page_views"],
                              f"Visitors, sessions and page views per {bucket}"), key="traffic_line")
right.plotly_chart(charts.line(sessions, "bucket", "bounce_rate", f"Bounce rate per {bucket}"), key="bounce_line")

st.subheader("Pages")
left, middle, right = st.columns(3)
left.plotly_chart(charts.bars(overview["top_pages"], "path", "page_views", "Top pages"),
                  key="top_pages")
entry, exit_ = overview["entry_pages"], overview["exit_pages"]
middle.plotly_chart(charts.bars(entry, "entry_page", "sessions", "Entry pages"), key="entry_pages")
right.plotly_chart(charts.bars(exit_, "exit_page", "sessions", "Exit pages"), key="exit_pages")

st.subheader("Acquisition")
left, right = st.columns(2)
referrers = overview["referrers"]
if len(referrers):
    left.plotly_chart(charts.bars(referrers, "referrer_host", "page_views", "Referrers"), key="referrers")
else:
    left.caption("No page views came from another site in this range.")
campaigns = overview["campaigns"]
right.markdown("**UTM campaigns**")
if len(campaigns):
    right.dataframe(campaigns, hide_index=True, width="stretch")
else:
    right.caption("No visits with UTM parameters in this range.")

st.subheader("Technology")
left, right = st.columns(2)
left.plotly_chart(charts.donut(overview["devices"], "device_type", "visitors",
                               "Devices (visitors)"), key="devices")
right.plotly_chart(charts.donut(overview["browsers"], "browser", "visitors",
                                "Browsers (visitors)"), key="browsers")
st.caption("Bots are " + ("excluded" if r.exclude_bots else "included (device type `bot`)")
           + ": switch with **Exclude bots** in the sidebar.")
