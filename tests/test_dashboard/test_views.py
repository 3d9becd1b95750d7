"""Every page of the dashboard rendered with Streamlit's AppTest on the hand-counted lake of demo_lake.py.

The expected numbers below are counted from the table in demo_lake.py's docstring, not computed
by the queries under test.
"""

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import dashboard
from clickstream.settings import Settings
from clickstream.stack.probes import free_port
from demo_lake import write_demo_lake

APP = str(Path(dashboard.__file__).parent / "app.py")


@pytest.fixture
def lake_env(tmp_path, monkeypatch):
    """A local-directory lake and a broker address nothing listens on."""
    monkeypatch.setenv("CLICKSTREAM_LAKE_DIR", str(tmp_path / "lake"))
    monkeypatch.setenv("CLICKSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CLICKSTREAM_DEMO_WRITE_KEY", "wk_dash")
    monkeypatch.setenv("CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    st.cache_data.clear()
    st.cache_resource.clear()
    return Settings(_env_file=None, lake_dir=tmp_path / "lake")


@pytest.fixture
def demo(lake_env, write_lake):
    write_demo_lake(lake_env, write_lake, datetime.now(timezone.utc))
    return lake_env


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def values(data) -> list:
    """A Plotly array as a list: Plotly sends numeric arrays base64-encoded ({"dtype", "bdata", "shape"})."""
    if isinstance(data, dict) and "bdata" in data:
        array = np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
        if "shape" in data:
            array = array.reshape([int(n) for n in str(data["shape"]).split(",")])
        return array.tolist()
    return list(data)


def test_empty_lake_says_how_to_send_an_event(lake_env):
    at = open_page()
    assert any("No events yet" in i.value and "wk_dash" in i.value for i in at.info)
    for page in ["traffic", "funnels", "paths", "retention", "experiments", "reactions", "health", "sql"]:
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at)


def test_live_shows_the_newest_windows(demo):
    at = open_page("live")
    assert metrics(at) == {"Events/s": "8.0", "Active visitors": "7", "Active sessions": "5"}
    pages = at.dataframe[0].value
    assert pages.to_dict("list") == {"path": ["/pricing", "/"], "page_views": [30, 25]}
    reactions = at.dataframe[1].value
    assert list(reactions["subject"]) == ["web:/live"]
    events_per_s = values(plotly_specs(at)[0]["data"][0]["y"])
    assert sorted(events_per_s) == [5.0, 8.0]  # the two-hour-old window is left out


def test_traffic_counts_and_bot_filter(demo):
    at = open_page("traffic")
    assert metrics(at) == {"Visitors": "4", "Sessions": "5", "Page views": "8", "Bounce rate": "60.0%",
                           "Avg. session": "1m 00s"}
    campaigns = at.dataframe[0].value
    assert campaigns.to_dict("list") == {"utm_source": ["newsletter"], "utm_medium": ["email"],
                                         "utm_campaign": ["november"], "sessions": [1], "visitors": [1]}
    titles = [s["layout"]["title"]["text"] for s in plotly_specs(at)]
    top = plotly_specs(at)[titles.index("Top pages")]["data"][0]
    assert dict(zip(top["y"], values(top["x"]))) == {"/": 4, "/pricing": 3, "/signup": 1}
    entry = plotly_specs(at)[titles.index("Entry pages")]["data"][0]
    assert dict(zip(entry["y"], values(entry["x"]))) == {"/": 4, "/pricing": 1}
    referrers = plotly_specs(at)[titles.index("Referrers")]["data"][0]
    assert dict(zip(referrers["y"], values(referrers["x"]))) == {"www.google.com": 1}

    at.sidebar.checkbox(key="exclude_bots").check().run()
    assert_clean(at)
    assert metrics(at) == {"Visitors": "3", "Sessions": "4", "Page views": "7", "Bounce rate": "50.0%",
                           "Avg. session": "1m 15s"}

    at.sidebar.selectbox(key="source").select("app").run()
    assert metrics(at)["Visitors"] == "1" and metrics(at)["Sessions"] == "1"


def test_funnel_steps_and_comparisons(demo):
    at = open_page("funnels")
    assert at.dataframe[0].value[["name", "units", "drop_off"]].to_dict("list") == {
        "name": ["/", "/pricing"], "units": [4, 2], "drop_off": [0, 2]}

    at.multiselect(key="funnel_steps").set_value(["/", "/pricing", "event:Order Completed"]).run()
    assert_clean(at)
    result = at.dataframe[0].value
    assert result[["units", "drop_off"]].to_dict("list") == {"units": [4, 2, 1], "drop_off": [0, 2, 1]}
    assert list(result["conversion"]) == [1.0, 0.5, 0.25]

    at.selectbox(key="funnel_compare").select("experiment variant").run()
    assert_clean(at)
    by_variant = at.dataframe[0].value
    assert by_variant[["group", "units"]].to_dict("list") == {"group": ["a", "a", "a", "b", "b", "b"],
                                                              "units": [2, 1, 1, 1, 1, 0]}


def test_paths_sankey(demo):
    at = open_page("paths")
    before, after = at.dataframe[0].value, at.dataframe[1].value
    assert before[["previous_page", "transitions"]].to_dict("list") == {"previous_page": ["(entry)"],
                                                                      "transitions": [4]}
    assert after[["next_page", "transitions"]].to_dict("list") == {"next_page": ["(exit)", "/pricing"],
                                                                 "transitions": [2, 2]}
    sankey = plotly_specs(at)[0]["data"][0]
    assert sankey["type"] == "sankey"
    assert sorted(values(sankey["link"]["value"])) == [2, 2, 4]


def test_retention_cohorts(demo):
    at = open_page("retention")
    assert at.dataframe[0].value.to_numpy().tolist() == [[4]]  # one week: everyone in week 0
    at.segmented_control(key="retention_period").set_value("day").run()
    assert_clean(at)
    assert at.dataframe[0].value.to_numpy().tolist() == [[4, 1]]  # v1 came back the next day
    heatmap = plotly_specs(at)[0]["data"][0]
    assert heatmap["type"] == "heatmap" and values(heatmap["z"])[0] == [1.0, 0.25]


def test_experiment_per_variant(demo):
    at = open_page("experiments")
    table = at.dataframe[0].value
    assert table[["variant", "exposures", "conversions"]].to_dict("list") == {
        "variant": ["a", "b"], "exposures": [1, 1], "conversions": [1, 0]}
    assert list(table["verdict"]) == ["control", "collecting data (fewer than 100 exposures)"]
    assert "No decision yet" in at.warning[0].value


def test_reactions_feed_and_filters(demo):
    at = open_page("reactions")
    assert metrics(at) == {"Reactions in range": "3"}
    at.selectbox(key="reactions_rule").select("hot-page").run()
    assert metrics(at) == {"Reactions in range": "2"}
    assert set(at.dataframe[0].value["subject"]) == {"web:/pricing", "web:/"}
    assert any("No rules file is configured" in m.value for m in at.markdown)


def test_health_without_kafka_shows_lake_and_invalid_events(demo):
    at = open_page("health")
    assert any("Kafka is unreachable" in w.value for w in at.warning)
    invalid = at.dataframe[-1].value
    assert invalid[["reason", "events"]].to_dict("list") == {
        "reason": ["either userId or anonymousId is required", "malformed JSON"], "events": [2, 1]}
    assert metrics(at)["Rejected in range"] == "3"


def test_sql_runs_and_refuses_writes(demo):
    at = open_page("sql")
    default = at.dataframe[0].value
    assert default.to_dict("list") == {"path": ["/", "/pricing", "/signup"], "page_views": [4, 3, 1]}
    at.text_area(key="sql_text").input("select count(*) as n from events").run()
    at.button(key="sql_run").click().run()
    assert at.dataframe[0].value.to_dict("list") == {"n": [12]}
    at.text_area(key="sql_text").input("drop view events").run()
    at.button(key="sql_run").click().run()
    assert "only SELECT" in at.error[0].value


def test_password_protects_every_page(demo, monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_DASHBOARD_PASSWORD", "s3cret")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.metric and not at.dataframe
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert at.error[0].value == "Wrong password." and not at.metric
    at.text_input[0].input("s3cret")
    at.button[0].click().run()
    assert_clean(at)
    assert metrics(at)["Events/s"] == "8.0"
