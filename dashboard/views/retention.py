"""Retention: visitors by first active day or week, and the share of them active in later ones."""

import streamlit as st

from dashboard import charts
from dashboard.filters import current_range
from dashboard.lake import load

st.title("Retention")
r = current_range()
period = st.segmented_control("Cohorts by", ["day", "week"], default="week", key="retention_period") or "week"
df = load("query.analyses:retention", r, period)
if df.empty:
    st.info("No visitors in the selected range: widen the date range in the sidebar.")
    st.stop()
st.caption(f"A visitor's cohort is the first {period} they were seen in the selected range.")
st.plotly_chart(charts.retention_heatmap(df, period), key="retention_heatmap")
table = df.pivot(index="cohort", columns="offset", values="visitors").fillna(0).astype(int)
table.columns = [f"{period} {c}" for c in table.columns]
st.dataframe(table, width="stretch")
