"""Paths: where visitors come from before a page and go after it, as a Sankey diagram."""

import streamlit as st

from dashboard import charts
from dashboard.filters import current_range
from dashboard.lake import load

st.title("Paths")
r = current_range()
pages = load("query.traffic:page_paths", r)
if not pages:
    st.info("No page views in the selected range: widen the date range in the sidebar.")
    st.stop()
left, right = st.columns([3, 1])
page = left.selectbox("Page", pages, key="paths_page")
limit = right.number_input("Pages each side", min_value=1, max_value=30, value=8, key="paths_limit")
both = load("query.analyses:neighbours", r, page, int(limit))
previous, following = both["previous"], both["next"]
st.caption("Within a session; `(exit)` on the left is the session's entry (no page before), on the right its end.")
previous = previous.replace({"previous_page": {"(exit)": "(entry)"}})
st.plotly_chart(charts.sankey(page, previous, following), key="sankey")
left, right = st.columns(2)
left.markdown(f"**Before {page}**")
left.dataframe(previous.style.format({"share": "{:.1%}"}), hide_index=True, width="stretch")
right.markdown(f"**After {page}**")
right.dataframe(following.style.format({"share": "{:.1%}"}), hide_index=True, width="stretch")
