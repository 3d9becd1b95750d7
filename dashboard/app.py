"""The Streamlit dashboard over the lake: the entry script that ``clickstream dashboard`` runs.

It asks for the password (when ``CLICKSTREAM_DASHBOARD_PASSWORD`` is set), draws the global
filters in the sidebar and hands over to the page picked in the navigation (``dashboard/views``).
Settings come from the same ``CLICKSTREAM_*`` environment as every other service.
"""

from __future__ import annotations


import streamlit as st

from dashboard import filters
from dashboard.auth import require_password
from dashboard.lake import fail, load, settings

st.set_page_config(page_title="clickstream", layout="wide")

try:
    config = settings()
except Exception as exc:  # SettingsError: says which variable to fix
    fail(str(exc))
require_password(config.dashboard_password)

PAGES = [
    st.Page("views/live.py", title="Live", icon=":material/bolt:", url_path="live", default=True),
    st.Page("views/traffic.py", title="Traffic", icon=":material/monitoring:", url_path="traffic"),
    st.Page("views/funnels.py", title="Funnels", icon=":material/filter_alt:", url_path="funnels"),
    st.Page("views/paths.py", title="Paths", icon=":material/alt_route:", url_path="paths"),
    st.Page("views/retention.py", title="Retention", icon=":material/grid_on:", url_path="retention"),
    st.Page("views/experiments.py", title="Experiments", icon=":material/science:", url_path="experiments"),
    st.Page("views/reactions.py", title="Reactions", icon=":material/notifications:", url_path="reactions"),
    st.Page("views/health.py", title="Pipeline health", icon=":material/health_and_safety:", url_path="health"),
    st.Page("views/sql.py", title="SQL", icon=":material/terminal:", url_path="sql"),
]
page = st.navigation(PAGES)
filters.sidebar(load("query.traffic:sources", slow=True), load("query.traffic:last_event_time", slow=True))
page.run()
