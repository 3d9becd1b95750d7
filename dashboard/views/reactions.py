"""Reactions: the feed of fired rules, and the rules in force."""

import streamlit as st

from dashboard.filters import current_range
from dashboard.lake import load, settings
from stream_processor.rules import RuleFileError, load_rules

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
if config.rules_file is None:
    st.markdown(f"No rules file is configured (`CLICKSTREAM_RULES_FILE`), so one rule is in force: a page "
                f"path with **{config.page_view_threshold:,}** page views or more in one "
                f"{config.windows_s[0]}-second window fires a reaction (`CLICKSTREAM_PAGE_VIEW_THRESHOLD`).")
else:
    try:
        in_force = load_rules(config.rules_file)
    except RuleFileError as exc:
        st.error(f"The rules file is rejected, so the processor keeps the rules it had: {exc}")
    else:
        st.dataframe([{"rule": rule.name, "kind": rule.kind, "source": rule.source or "all",
                       "cooldown_s": rule.cooldown_s,
                       "definition": rule.model_dump_json(exclude={"name", "kind", "source", "cooldown_s"},
                                                          exclude_none=True)}
                      for rule in in_force.rules], hide_index=True, width="stretch")
        st.caption(f"From `{config.rules_file}`; the processor reloads it when it changes.")
