"""The dashboard's pure pieces: stall detection, experiment verdicts, the password check, default dates."""

from datetime import date, datetime, timedelta, timezone

import pandas as pd
from pydantic import SecretStr

from clickstream.settings import Settings
from clickstream.topics import Topics
from dashboard.auth import password_matches
from dashboard.filters import default_dates, range_of
from dashboard.kafka_health import KafkaSnapshot, lag_table, stage_warnings, stages
from query.experiments import verdicts

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
TOPICS = Topics.from_prefix("cs.")


def snapshot(committed: dict, newest_age_s: dict) -> KafkaSnapshot:
    ends = {(TOPICS.raw, 0): 100, (TOPICS.raw, 1): 50, (TOPICS.reactions, 0): 3}
    for topic in (TOPICS.events, TOPICS.invalid, TOPICS.sessions, TOPICS.metrics):
        ends[(topic, 0)] = 0
    newest = {t: NOW - timedelta(seconds=s) for t, s in newest_age_s.items()}
    return KafkaSnapshot(ends, committed, newest)


def test_lag_counts_uncommitted_partitions_from_zero():
    snap = snapshot({"cs.processor": {(TOPICS.raw, 0): 90}}, {})
    lag = lag_table(snap, stages(TOPICS)).set_index(["group", "topic"])
    assert lag.loc[("cs.processor", TOPICS.raw), "lag"] == 10 + 50
    assert not lag.loc[("cs.processor", TOPICS.raw), "never_committed"]
    assert lag.loc[("cs.reactor", TOPICS.reactions), "never_committed"]
    assert lag.loc[("cs.sink", TOPICS.events), "lag"] == 0


def test_a_consumer_behind_old_records_is_stalled_one_behind_fresh_records_is_not():
    committed = {"cs.processor": {(TOPICS.raw, 0): 90, (TOPICS.raw, 1): 50},
                 "cs.reactor": {(TOPICS.reactions, 0): 3}, "cs.sink": {(TOPICS.reactions, 0): 3}}
    lag = lag_table(snapshot(committed, {TOPICS.raw: 10}), stages(TOPICS))
    assert stage_warnings(lag, {TOPICS.raw: NOW - timedelta(seconds=10)}, NOW, 5.0, TOPICS.raw) == []
    warnings = stage_warnings(lag, {TOPICS.raw: NOW - timedelta(seconds=600)}, NOW, 5.0, TOPICS.raw)
    assert len(warnings) == 1 and "stalled on cs.raw, 10 records behind" in warnings[0]


def test_never_committed_and_stale_lake_are_reported():
    lag = lag_table(snapshot({"cs.processor": {(TOPICS.raw, 0): 100, (TOPICS.raw, 1): 50}}, {}), stages(TOPICS))
    warnings = stage_warnings(lag, {TOPICS.raw: NOW - timedelta(seconds=5)}, NOW, 900.0, TOPICS.raw)
    assert any("cs.reactor has never committed on cs.reactions (3 records waiting)" in w for w in warnings)
    assert any(w.startswith("lake: the newest event in the lake is 900 s old") for w in warnings)


def experiment(rows):
    df = pd.DataFrame(rows, columns=["variant", "exposures", "conversions", "rate", "lift", "p_value"])
    return df


def test_verdicts():
    df = experiment([("a", 1000, 50, 0.05, 0.0, 1.0), ("b", 1000, 80, 0.08, 0.6, 0.006),
                     ("c", 1000, 52, 0.052, 0.04, 0.84), ("d", 1000, 20, 0.02, -0.6, 0.0001),
                     ("e", 40, 10, 0.25, 4.0, 0.0)])
    assert verdicts(df, 0.95) == ["control", "decided: better than control", "no significant difference yet",
                                  "decided: worse than control", "collecting data (fewer than 100 exposures)"]
    assert verdicts(df, 0.999)[1] == "no significant difference yet"


def test_password_check():
    assert password_matches("s3cret", SecretStr("s3cret"))
    assert not password_matches("s3cre", SecretStr("s3cret"))


def test_password_reaches_child_processes_unmasked():
    assert Settings(_env_file=None, dashboard_password="pw").as_env()["CLICKSTREAM_DASHBOARD_PASSWORD"] == "pw"
    assert "CLICKSTREAM_DASHBOARD_PASSWORD" not in Settings(_env_file=None).as_env()


def test_default_dates_open_on_the_newest_data():
    assert default_dates(datetime(2026, 10, 3, 5, tzinfo=timezone.utc), date(2026, 11, 27)) == (
        date(2026, 9, 27), date(2026, 10, 3))
    assert default_dates(None, date(2026, 11, 27)) == (date(2026, 11, 21), date(2026, 11, 27))
    r = range_of(date(2026, 11, 1), date(2026, 11, 2), "web", True)
    assert (r.since.isoformat(), r.until.isoformat()) == ("2026-11-01T00:00:00+00:00", "2026-11-03T00:00:00+00:00")


def test_ages_read_naturally():
    from dashboard.format import age

    assert [age(s) for s in (None, float("nan"), 42, 300, 7200, 586_768)] == [
        "never", "never", "42 s ago", "5 min ago", "2 h ago", "7 d ago"]
