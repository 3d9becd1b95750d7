"""Reactions: the feed of fired rules, and the rules in force."""

import streamlit as st

from dashboard.filters import current_range
from dashboard.lake import load, settings

st.title("Reactions")
r = current_range()
config = settings()
rules, kinds = load("query.reactions:rule_names")
left, middle, right = st.columns(3)
rule = left.selectbox("Rule", ["all"] + rules, key="reactions_rule")
kind = middle.selectbox("Kind", ["all"] + kinds, key="reactions_kind")
subject = right.text_input("Subject contains", key="reactions_subject")
feed = load("query.reactions:reactions_feed", r.since, r.until, None if rule == "all" else rule,
            None if kind == "all" else kind, subject or None)
st.metric("Reactions in range", f"{len(feed):,}" + ("+" if len(feed) >= 500 else ""))
if len(feed):
    st.dataframe(feed, hide_index=True, width="stretch")
else:
    st.info("No rule fired in the selected range and filters. Rules fire when the stream processor's "
            "windowed counts cross their thresholds; the fired ones land in the `reactions` table.")

st.subheader("Rules in force")
st.markdown(f"- Built in: a page path with **{config.page_view_threshold:,}** page views or more in one "
            f"{config.window_s}-second window fires a reaction (`CLICKSTREAM_PAGE_VIEW_THRESHOLD`, "
            "`CLICKSTREAM_WINDOW_S`).")
rules_file = getattr(config, "rules_file", None)  # a setting that a later version of the processor adds
if rules_file is None:
    st.info("No rules file is configured: only the built-in rule above is in force.")
else:
    try:
        st.code(open(rules_file, encoding="utf-8").read(), language="yaml")
        st.caption(f"From `{rules_file}`.")
    except OSError as exc:
        st.warning(f"Cannot read the rules file `{rules_file}`: {exc}")
