"""The Streamlit app rendered with AppTest on a generated local lake."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import dashboard
from clickstream.settings import Settings

APP = str(Path(dashboard.__file__).parent / "app.py")
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def lake_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_LAKE_DIR", str(tmp_path / "lake"))
    monkeypatch.setenv("CLICKSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CLICKSTREAM_DEMO_WRITE_KEY", "wk_dash")
    st.cache_data.clear()
    st.cache_resource.clear()
    return Settings(_env_file=None, lake_dir=tmp_path / "lake")


def run_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def test_empty_lake_says_how_to_send_an_event(lake_env):
    at = run_app()
    assert "No events yet" in at.info[0].value
    assert "wk_dash" in at.info[0].value


def test_shows_counts_and_top_pages(lake_env, event_factory, write_lake):
    events = [event_factory(timestamp=T0 + timedelta(minutes=i % 3), path="/a" if i < 5 else "/b",
                            anonymous_id=f"v{i % 4}", session_id=f"s{i % 2}") for i in range(8)]
    events += [event_factory(type="track", event="Signed Up", path=None, timestamp=T0, anonymous_id="v9")]
    write_lake(lake_env, events)

    at = run_app()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Events": "9", "Page views": "8", "Visitors": "5", "Sessions": "2"}
    pages = at.dataframe[0].value
    assert pages.to_dict("list") == {"path": ["/a", "/b"], "page_views": [5, 3]}
