"""Pipeline health: is data flowing through each stage, what is stuck, and what was rejected."""

from datetime import datetime, timezone

import streamlit as st

from clickstream.lake import SCHEMAS
from clickstream.topics import Topics
from dashboard.filters import current_range
from dashboard.format import age
from dashboard.kafka_health import lag_table, read_kafka, stage_warnings, stages
from dashboard.lake import load, settings

STALL_AFTER_S = 120

st.title("Pipeline health")
config = settings()
topics = Topics.from_settings(config)
now = datetime.now(timezone.utc).replace(microsecond=0)
lake = load("query.health:lake_freshness", now)

lake_age = lake.set_index("table")["age_s"].get("events")
lake_age = None if lake_age is None or lake_age != lake_age else float(lake_age)  # NaN: nothing yet
cols = st.columns(3)
cols[0].metric("Newest event in the lake", age(lake_age),
               help="Time since the newest event's arrival at the API (received_at): event-to-lake freshness")
events_row = lake.set_index("table").loc["events"]
cols[1].metric("Events reaching the lake", f"{events_row['rows_per_s']:,.2f}/s", help="Over the last 5 minutes")
metrics_age = lake.set_index("table")["age_s"].get("metrics")
cols[2].metric("Newest metric window", age(metrics_age))
if lake_age is not None and lake_age > STALL_AFTER_S:
    st.warning(f"No event has reached the lake for {age(lake_age).removesuffix(' ago')}. If events are being "
               "sent, the stream processor or the sink is not delivering: see Kafka below.")

st.subheader("Kafka")
try:
    snapshot = read_kafka(config)
except Exception as exc:  # unreachable broker: a timeout or a connection error, said in words
    snapshot = None
    st.warning(f"Kafka is unreachable at `{config.bootstrap_servers}` ({type(exc).__name__}: {exc or 'timed out'}). "
               "Consumer lag cannot be shown; the lake figures above and below still are.")
if snapshot is not None:
    stage_list = stages(topics)
    lag = lag_table(snapshot, stage_list)
    warnings = stage_warnings(lag, snapshot.newest, now, lake_age, topics.raw, STALL_AFTER_S)
    for warning in warnings:
        st.warning(warning)
    if not warnings:
        st.success("Every stage is keeping up.")
    newest = {t: age((now - at).total_seconds()) for t, at in snapshot.newest.items()}
    lag["newest record"] = lag["topic"].map(newest).fillna("-")
    st.dataframe(lag.drop(columns=["never_committed"]), hide_index=True, width="stretch")
    totals = {}
    for (topic, _), end in snapshot.end_offsets.items():
        totals[topic] = totals.get(topic, 0) + end
    st.caption("Records per topic: " + ", ".join(f"`{t}` {n:,}" for t, n in sorted(totals.items())))

st.subheader("Lake tables")
st.dataframe(lake, hide_index=True, width="stretch",
             column_config={"age_s": st.column_config.NumberColumn("age (s)", format="%.0f"),
                            "rows_per_s": st.column_config.NumberColumn("rows/s (5 min)", format="%.2f")})

st.subheader("Invalid events")
r = current_range()
invalid = load("query.health:invalid_by_reason", r.since, r.until, r.source)
if len(invalid):
    st.metric("Rejected in range", f"{int(invalid['events'].sum()):,}")
    st.dataframe(invalid, hide_index=True, width="stretch")
else:
    st.caption("No event was rejected in the selected range.")

st.subheader("Reactor dead letters")
dead = [t for t in SCHEMAS if "dead" in t] + [t for t in topics.all() if "dead" in t]
if dead:
    st.write("Dead-letter tables and topics: " + ", ".join(f"`{d}`" for d in dead))
else:
    st.caption("This version has no dead-letter table or topic: the reactor retries a webhook until it answers.")
