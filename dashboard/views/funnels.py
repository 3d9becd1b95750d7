"""Funnels: ordered steps (page paths or event names), conversion and drop-off per step, by group."""

import streamlit as st

from dashboard import charts
from dashboard.filters import current_range
from dashboard.lake import fail, load
from query.analyses import Step

st.title("Funnels")
r = current_range()
paths = load("query.traffic:page_paths", r)
events = load("query.traffic:event_names", r)
if not paths and not events:
    st.info("No page views or track events in the selected range: widen the date range in the sidebar.")
    st.stop()

options = paths + [f"event:{e}" for e in events]
chosen = st.multiselect(
    "Steps, in order", options, key="funnel_steps", accept_new_options=True,
    help="Page paths start with /; event:Name is a track event. Pick them in funnel order.",
    default=[o for o in options[:2]],
)
left, middle, right = st.columns(3)
within_kind = left.radio("Within", ["one session", "minutes from step 1"], key="funnel_within", horizontal=True)
minutes = middle.number_input("Minutes", min_value=1, value=30, key="funnel_minutes",
                              disabled=within_kind == "one session")
compare = right.selectbox("Compare by", ["nothing", "source", "experiment variant"], key="funnel_compare")
if not chosen:
    st.info("Pick at least one step.")
    st.stop()
steps = [Step.parse(s) for s in chosen]
within = "session" if within_kind == "one session" else int(minutes)

if compare == "nothing":
    result = load("query.analyses:funnel", r, steps, within)
    group = None
elif compare == "source":
    result = load("query.funnels:funnel_by", r, steps, within, "source")
    group = "group"
else:
    experiments = load("query.experiments:experiment_ids", r)
    if not experiments:
        fail("No experiment has exposures (Experiment Viewed) in this range, so there are no variants to compare.")
    experiment = st.selectbox("Experiment", experiments, key="funnel_experiment")
    result = load("query.funnels:funnel_by", r, steps, within, "variant", experiment)
    group = "group"

if result.empty or not result["units"].any():
    st.info("No one reached the first step in this range.")
    st.stop()
st.plotly_chart(charts.funnel(result, group), key="funnel_chart")
st.dataframe(result.style.format({"conversion": "{:.1%}"}), hide_index=True, width="stretch")
