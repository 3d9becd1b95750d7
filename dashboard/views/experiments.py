"""Experiments: per variant, exposures, conversions, rate, lift with its interval and p-value, and a verdict."""

import streamlit as st

from dashboard import charts
from dashboard.filters import current_range
from dashboard.lake import load
from query.experiments import verdicts

st.title("Experiments")
r = current_range()
experiments = load("query.experiments:experiment_ids", r)
if not experiments:
    st.info("No experiment in the selected range. Experiments are read from Segment's `Experiment Viewed` "
            "events (properties `experiment_id` and `variation_name`, as in Segment's A/B testing spec).")
    st.stop()
events = load("query.traffic:event_names", r)
left, middle, right = st.columns([2, 2, 1])
experiment = left.selectbox("Experiment", experiments, key="experiment_id")
default = events.index("Order Completed") if "Order Completed" in events else 0
conversion = middle.selectbox("Conversion event", events or ["Order Completed"], index=default,
                              key="experiment_conversion")
confidence = right.selectbox("Confidence", [0.90, 0.95, 0.99], index=1, key="experiment_confidence",
                             format_func=lambda c: f"{c:.0%}")
df = load("query.analyses:experiment", r, experiment, conversion, confidence)
df["verdict"] = verdicts(df, confidence)
decided = [v for v in df["verdict"] if v.startswith("decided")]
if decided:
    st.success(f"Decision reached at {confidence:.0%} confidence: " + "; ".join(
        f"{variant} {v.removeprefix('decided: ')}" for variant, v in zip(df["variant"], df["verdict"])
        if v.startswith("decided")))
else:
    st.warning(f"No decision yet at {confidence:.0%} confidence.")
st.plotly_chart(charts.experiment_rates(df), key="experiment_rates")
st.dataframe(
    df[["variant", "exposures", "conversions", "rate", "lift", "ci_low", "ci_high", "p_value", "verdict"]].style.format(
        {"rate": "{:.2%}", "lift": "{:+.1%}", "ci_low": "{:+.2%}", "ci_high": "{:+.2%}", "p_value": "{:.4f}"},
        na_rep="-"),
    hide_index=True, width="stretch")
st.caption("The first variant (alphabetical) is the control. Conversions are exposed visitors who sent the "
           "conversion event after their first exposure; lift is relative to the control's rate; the interval "
           "is that of the difference in rates; the p-value is a two-proportion z-test. A decision needs the "
           "p-value under 1 - confidence and at least 100 exposures on each side.")
