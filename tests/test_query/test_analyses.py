"""Each analysis on a small hand-made lake whose answers are counted by hand."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from scipy.stats import chi2_contingency, norm

from clickstream.settings import Settings
from query.analyses import Range, Step, experiment, funnel, paths, retention, sessionize, top_pages, top_referrers, \
    traffic
from query.engine import connect
from query.traffic import overview
from query.stats import two_proportion_test

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
FIRST_HOUR = Range(T0, T0 + timedelta(hours=1))
HUMANS_FIRST_HOUR = Range(T0, T0 + timedelta(hours=1), exclude_bots=True)
ALL = Range(T0 - timedelta(days=1), T0 + timedelta(days=5))


def m(minutes=0, days=0):
    return T0 + timedelta(minutes=minutes, days=days)


@pytest.fixture
def con(tmp_path, event_factory, write_lake):
    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake")

    def page(visitor, session, path, at, referrer_host=None, bot=False):
        return event_factory(anonymous_id=visitor, session_id=session, type="page", path=path, timestamp=at,
                             host="shop.example", referrer_host=referrer_host, is_bot=bot)

    def track(visitor, session, name, at, **props):
        return event_factory(anonymous_id=visitor, session_id=session, type="track", event=name, path=None,
                             timestamp=at, properties=props)

    events = [
        page("v1", "s1", "/", m(0), referrer_host="search.example"), page("v1", "s1", "/pricing", m(1)),
        track("v1", "s1", "Signup Started", m(2)), page("v1", "s1", "/checkout", m(3)),
        track("v1", "s1", "Order Completed", m(4)),
        page("v2", "s2", "/", m(0), referrer_host="search.example"), page("v2", "s2", "/pricing", m(5)),
        page("v3", "s3", "/pricing", m(0), referrer_host="news.example"), page("v3", "s3", "/checkout", m(1)),
        page("v4", "s4", "/", m(10), referrer_host="shop.example"), page("v4", "s4", "/checkout", m(11)),
        page("v4", "s4", "/pricing", m(12)),
        # later days, for retention and sessions
        page("v1", "s1b", "/", m(days=2)), page("v3", "s3b", "/", m(days=1)), page("v3", "s3c", "/", m(days=2)),
        page("v4", "s4b", "/", m(days=1)),
        page("bot1", "sb", "/", m(30), bot=True),
    ]
    write_lake(settings, events)
    return connect(settings)


def test_traffic_by_day(con):
    df = traffic(con, ALL, "day")
    assert df["events"].tolist() == [13, 2, 2]
    assert df["visitors"].tolist() == [5, 2, 2]
    assert traffic(con, Range(ALL.since, ALL.until, exclude_bots=True), "day")["visitors"].tolist() == [4, 2, 2]


def test_top_pages_and_referrers(con):
    pages = top_pages(con, FIRST_HOUR, limit=3)
    assert pages.to_dict("list") == {"path": ["/", "/pricing", "/checkout"], "page_views": [4, 4, 3],
                                     "visitors": [4, 4, 3]}
    refs = top_referrers(con, FIRST_HOUR)
    # the site's own host is not a referrer
    assert refs.to_dict("list") == {"referrer_host": ["search.example", "news.example"], "page_views": [2, 1],
                                    "visitors": [2, 1]}


def test_funnel_within_a_session(con):
    steps = [Step.parse("/"), Step.parse("/pricing"), Step.parse("/checkout")]
    df = funnel(con, HUMANS_FIRST_HOUR, steps)
    assert df["units"].tolist() == [3, 3, 1]
    assert df["drop_off"].tolist() == [0, 0, 2]
    assert df["conversion"].tolist() == pytest.approx([1, 1, 1 / 3])


def test_funnel_within_minutes_of_the_first_step(con):
    steps = [Step.parse("/"), Step.parse("/pricing"), Step.parse("/checkout")]
    assert funnel(con, HUMANS_FIRST_HOUR, steps, within=2)["units"].tolist() == [3, 2, 0]
    assert funnel(con, FIRST_HOUR, steps, within=2)["units"].tolist() == [4, 2, 0]  # the bot saw "/" too


def test_funnel_with_events(con):
    steps = [Step.parse("/pricing"), Step.parse("Signup Started"), Step.parse("event:Order Completed")]
    assert funnel(con, FIRST_HOUR, steps)["units"].tolist() == [4, 1, 1]


def test_paths_next_and_previous(con):
    nxt = paths(con, FIRST_HOUR, "/pricing", "next")
    assert dict(zip(nxt["next_page"], nxt["transitions"])) == {"/checkout": 2, "(exit)": 2}
    prev = paths(con, FIRST_HOUR, "/checkout", "previous")
    assert dict(zip(prev["previous_page"], prev["transitions"])) == {"/pricing": 2, "/": 1}


def test_retention_by_day(con):
    df = retention(con, Range(ALL.since, ALL.until, exclude_bots=True), "day")
    assert df[["offset", "visitors", "cohort_size"]].values.tolist() == [[0, 4, 4], [1, 2, 4], [2, 2, 4]]
    assert df["share"].tolist() == [1.0, 0.5, 0.5]


def test_sessions_rebuilt_in_sql(con):
    df = sessionize(con, Range(ALL.since, ALL.until, exclude_bots=True), timeout_minutes=30)
    assert df.groupby("visitor").size().to_dict() == {"v1": 2, "v2": 1, "v3": 3, "v4": 2}
    v1 = df[df.visitor == "v1"].iloc[0]
    assert (v1.event_count, v1.page_views, v1.entry_path, v1.exit_path, v1.duration_s) == (5, 3, "/", "/checkout",
                                                                                         240)


def test_experiment_against_scipy(tmp_path, event_factory, write_lake):
    settings = Settings(_env_file=None, lake_dir=tmp_path / "exp")
    events, expected = [], {"A": (200, 20), "B": (180, 36)}
    for variant, (n, conversions) in expected.items():
        for i in range(n):
            visitor = f"{variant}{i}"
            events.append(event_factory(anonymous_id=visitor, type="track", event="Experiment Viewed", path=None,
                                        timestamp=m(1), properties={"experimentId": "exp1", "variationName": variant}))
            if i < conversions:
                events.append(event_factory(anonymous_id=visitor, type="track", event="Order Completed", path=None,
                                            timestamp=m(5)))
    # a conversion before exposure does not count
    events.append(event_factory(anonymous_id="A150", type="track", event="Order Completed", path=None,
                                timestamp=m(0)))
    write_lake(settings, events)
    df = experiment(connect(settings), FIRST_HOUR, "exp1")
    assert df[["variant", "exposures", "conversions"]].values.tolist() == [["A", 200, 20], ["B", 180, 36]]
    b = df.iloc[1]
    p_scipy = chi2_contingency([[20, 180], [36, 144]], correction=False).pvalue
    assert b.p_value == pytest.approx(p_scipy, rel=1e-9)
    assert b.lift == pytest.approx((36 / 180 - 0.1) / 0.1)
    assert bool(b.significant) == bool(p_scipy < 0.05)


@pytest.mark.parametrize("c1,n1,c2,n2", [(10, 100, 15, 100), (120, 1000, 95, 1000), (1, 30, 9, 31), (50, 50, 49, 50)])
def test_two_proportion_test_matches_scipy(c1, n1, c2, n2):
    t = two_proportion_test(c1, n1, c2, n2, 0.95)
    assert t.p_value == pytest.approx(chi2_contingency([[c1, n1 - c1], [c2, n2 - c2]], correction=False).pvalue,
                                      rel=1e-9)
    p1, p2 = c1 / n1, c2 / n2
    half = norm.ppf(0.975) * ((p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) ** 0.5)
    assert (t.ci_low, t.ci_high) == pytest.approx((p2 - p1 - half, p2 - p1 + half))


def test_identical_rates_are_not_significant():
    t = two_proportion_test(0, 10, 0, 10)
    assert t.p_value == 1.0 and pd.isna(t.lift)


def test_cli_runs_an_analysis(con, tmp_path):
    import json
    import subprocess
    import sys

    env = {"CLICKSTREAM_LAKE_DIR": str(tmp_path / "lake"), "CLICKSTREAM_STATE_DIR": str(tmp_path / "state"),
           "PATH": "/usr/bin:/bin"}
    args = [sys.executable, "-m", "clickstream", "analyze", "funnel", "--step", "/", "--step", "/pricing",
            "--since", "2026-11-20T10:00:00", "--until", "2026-11-20T11:00:00", "--exclude-bots", "--format", "json"]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [row["units"] for row in json.loads(result.stdout)] == [3, 3]
    bad = subprocess.run(args[:5] + ["--step", "/", "--within", "soon"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "whole number of minutes" in bad.stderr


def test_weekly_retention_and_hourly_traffic_follow_utc_weeks_and_hours(tmp_path, event_factory, write_lake):
    """ISO weeks start on Monday: a Sunday-night visit and the Monday-morning one after it fall in
    consecutive weeks; hour buckets are the UTC hours of the events."""
    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake")
    utc = timezone.utc
    visits = {"a": [datetime(2026, 11, 22, 23, 30, tzinfo=utc), datetime(2026, 11, 23, 0, 30, tzinfo=utc)],
              "b": [datetime(2026, 11, 23, 10, 0, tzinfo=utc)],
              "c": [datetime(2026, 11, 15, 12, 0, tzinfo=utc), datetime(2026, 11, 30, 9, 0, tzinfo=utc)]}
    write_lake(settings, [event_factory(anonymous_id=v, timestamp=at) for v, times in visits.items() for at in times])
    con = connect(settings)
    everything = Range(datetime(2026, 11, 1, tzinfo=utc), datetime(2026, 12, 15, tzinfo=utc))
    df = retention(con, everything, "week")
    monday = [pd.Timestamp(d, tz="UTC") for d in ("2026-11-09", "2026-11-16", "2026-11-23")]
    assert df[["cohort", "offset", "visitors", "cohort_size"]].values.tolist() == [
        [monday[0], 0, 1, 1], [monday[0], 3, 1, 1], [monday[1], 0, 1, 1], [monday[1], 1, 1, 1], [monday[2], 0, 1, 1]]
    hourly = traffic(con, Range(datetime(2026, 11, 22, tzinfo=utc), datetime(2026, 11, 24, tzinfo=utc)), "hour")
    assert hourly[["bucket", "events"]].values.tolist() == [
        [pd.Timestamp("2026-11-22 23:00", tz="UTC"), 1], [pd.Timestamp("2026-11-23 00:00", tz="UTC"), 1],
        [pd.Timestamp("2026-11-23 10:00", tz="UTC"), 1]]


def test_sql_sessions_follow_the_device_across_sign_in_and_cut_at_exactly_the_timeout(tmp_path, event_factory,
                                                                                       write_lake):
    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake2")
    events = [event_factory(anonymous_id="d1", timestamp=m(0)),
              event_factory(anonymous_id="d1", user_id="u1", timestamp=m(10)),  # signs in: same session
              event_factory(anonymous_id="d1", user_id="u1", timestamp=m(40)),  # a gap of exactly 30 min
              event_factory(anonymous_id="d1", user_id="u1", timestamp=m(69))]
    write_lake(settings, events)
    df = sessionize(connect(settings), Range(m(-60), m(120)), timeout_minutes=30)
    assert list(df["visitor"]) == ["d1", "d1"] and list(df["event_count"]) == [2, 2]



def test_sql_sessions_keep_events_at_the_same_instant_together(tmp_path, event_factory, write_lake):
    # Many events of each device at one instant right after a gap of the timeout: however DuckDB
    # orders them (two windows, several threads, objects of two Kafka partitions), they form one
    # session with every one of them, after the device's first session.
    settings = Settings(_env_file=None, lake_dir=tmp_path / "ties")
    devices = [f"d{i}" for i in range(20)]
    for partition in (0, 1):
        events = []
        for d in devices[partition::2]:
            events.append(event_factory(anonymous_id=d, type="page", path="/", timestamp=m(0)))
            events += [event_factory(anonymous_id=d, type="page", path=f"/p{k}", timestamp=m(30)) for k in range(40)]
        write_lake(settings, events, partition=partition)
    df = sessionize(connect(settings), Range(m(-60), m(120)), timeout_minutes=30)
    assert df["visitor"].tolist() == [d for d in sorted(devices) for _ in range(2)]
    assert df["session_number"].tolist() == [1, 2] * len(devices)
    assert df["event_count"].tolist() == [1, 40] * len(devices)
    assert df["duration_s"].tolist() == [0.0, 0.0] * len(devices)


def test_paths_order_page_views_at_the_same_instant_by_path(tmp_path, event_factory, write_lake):
    settings = Settings(_env_file=None, lake_dir=tmp_path / "tied-paths")
    events = [event_factory(anonymous_id="v", session_id="s", type="page", path=p, timestamp=at)
              for p, at in [("/", m(0)), ("/b", m(1)), ("/a", m(1)), ("/c", m(2))]]
    write_lake(settings, events)
    con = connect(settings)
    r = Range(m(-60), m(120))
    assert paths(con, r, "/", "next")["next_page"].tolist() == ["/a"]
    assert paths(con, r, "/a", "next")["next_page"].tolist() == ["/b"]
    assert paths(con, r, "/c", "previous")["previous_page"].tolist() == ["/b"]

def test_traffic_overview_counts_the_first_hour(con):
    ov = overview(con, FIRST_HOUR, "hour", limit=10)
    # s1 (v1): 3 pages + 2 tracks over 4 min; s2: 2 pages, 5 min; s3: 2 pages, 1 min; s4: 3 pages, 2 min;
    # sb (bot): 1 page, so the only bounce.
    assert ov["summary"] == {"events": 13, "visitors": 5, "page_views": 11, "sessions": 5, "bounce_rate": 0.2,
                             "avg_session_s": (240 + 300 + 60 + 120 + 0) / 5}
    assert ov["over_time"].to_dict("list") == {"bucket": [pd.Timestamp(T0)], "events": [13], "page_views": [11],
                                               "visitors": [5], "sessions": [5]}
    assert ov["sessions_over_time"].to_dict("list") == {"bucket": [pd.Timestamp(T0)], "sessions": [5],
                                                        "bounce_rate": [0.2], "avg_session_s": [144.0]}
    assert ov["entry_pages"].to_dict("list") == {"entry_page": ["/", "/pricing"], "sessions": [4, 1]}
    assert ov["exit_pages"].to_dict("list") == {"exit_page": ["/checkout", "/pricing", "/"], "sessions": [2, 2, 1]}
    # the same answers as the single-purpose analyses
    pd.testing.assert_frame_equal(ov["top_pages"], top_pages(con, FIRST_HOUR, limit=10), check_dtype=False)
    pd.testing.assert_frame_equal(ov["referrers"], top_referrers(con, FIRST_HOUR), check_dtype=False)
    assert ov["devices"].to_dict("list") == {"device_type": ["(none)"], "visitors": [5], "events": [13]}
    assert ov["campaigns"].empty and list(ov["campaigns"]) == ["utm_source", "utm_medium", "utm_campaign",
                                                               "sessions", "visitors"]

    humans = overview(con, HUMANS_FIRST_HOUR, "hour")["summary"]
    assert humans == {"events": 12, "visitors": 4, "page_views": 10, "sessions": 4, "bounce_rate": 0.0,
                      "avg_session_s": 180.0}
    assert overview(con, ALL, "day", limit=2)["top_pages"]["path"].tolist() == ["/", "/pricing"]


def test_traffic_overview_buckets_campaigns_and_sessions_across_midnight(tmp_path, event_factory, write_lake):
    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake")
    midnight = datetime(2026, 11, 21, tzinfo=timezone.utc)

    def page(visitor, session, at, **fields):
        return event_factory(anonymous_id=visitor, session_id=session, type="page", path="/", timestamp=at,
                             host="shop.example", **fields)

    utm = {"utm_source": "news", "utm_medium": "email", "utm_campaign": "nov"}
    write_lake(settings, [
        page("a", "sa", midnight - timedelta(minutes=5), **utm, device_type="mobile", browser="Safari"),
        page("a", "sa", midnight + timedelta(minutes=5), device_type="mobile", browser="Safari"),
        page("b", "sb", midnight + timedelta(hours=2), **utm, device_type="desktop", browser="Firefox"),
        page("c", "sc", midnight + timedelta(hours=2, minutes=1), device_type="desktop", browser="Chrome"),
        page("c", None, midnight + timedelta(hours=3), device_type="desktop", browser="Chrome"),
    ])
    con = connect(settings)
    ov = overview(con, Range(midnight - timedelta(days=1), midnight + timedelta(days=1)), "day")
    # the session over midnight is seen on both days, and counted by the day it started
    assert ov["over_time"][["events", "visitors", "sessions"]].to_dict("list") == {
        "events": [1, 4], "visitors": [1, 3], "sessions": [1, 3]}
    assert ov["sessions_over_time"][["sessions", "bounce_rate"]].to_dict("list") == {
        "sessions": [1, 2], "bounce_rate": [0.0, 1.0]}
    assert ov["summary"]["sessions"] == 3 and ov["summary"]["avg_session_s"] == 600 / 3
    assert ov["campaigns"].to_dict("list") == {"utm_source": ["news"], "utm_medium": ["email"],
                                               "utm_campaign": ["nov"], "sessions": [2], "visitors": [2]}
    assert ov["devices"].to_dict("list") == {"device_type": ["desktop", "mobile"], "visitors": [2, 1],
                                             "events": [3, 2]}
    assert ov["browsers"]["browser"].tolist() == ["Chrome", "Safari", "Firefox"]  # visitors, then events
    hourly = overview(con, Range(midnight, midnight + timedelta(hours=4)), "hour")["over_time"]
    assert hourly["bucket"].dt.hour.tolist() == [0, 2, 3] and hourly["events"].tolist() == [1, 2, 1]


def _sessions_by_hand(events, timeout: timedelta) -> list[tuple]:
    """The sessions of ``events`` the simple way: each device's events in time order, cut at gaps of the timeout or more."""
    by_device: dict[str, list] = {}
    for e in events:
        by_device.setdefault(e.anonymous_id or e.user_id, []).append(e)
    sessions = []
    for device in sorted(by_device):
        ordered = sorted(by_device[device], key=lambda e: e.timestamp)
        current = [ordered[0]]
        for previous, e in zip(ordered, ordered[1:]):
            if e.timestamp - previous.timestamp >= timeout:
                sessions.append((device, current))
                current = []
            current.append(e)
        sessions.append((device, current))
    rows = []
    for number, (device, members) in enumerate(sessions):
        pages = [e for e in members if e.type == "page"]
        rows.append((device, members[0].timestamp, members[-1].timestamp, len(members), len(pages),
                     pages[0].path if pages else None, pages[-1].path if pages else None))
    return rows


def test_sql_sessions_match_a_plain_implementation_around_slice_edges_and_the_epoch(tmp_path, event_factory,
                                                                                  write_lake):
    # Gaps just under, at and just over the timeout, events on and beside multiples of the
    # timeout since the epoch (where the SQL slices time), and a device active across 1970-01-01.
    import random

    rng = random.Random(7)
    timeout = timedelta(minutes=30)
    tick = timedelta(microseconds=1)
    gaps = [timedelta(0), tick, timedelta(seconds=1), timeout - tick, timeout, timeout + tick, 2 * timeout - tick,
            2 * timeout, timedelta(minutes=7), timedelta(hours=5)]
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    starts = {f"d{i}": T0.replace(minute=0) + timedelta(minutes=30 * i) - tick * (i % 3) for i in range(7)}
    starts["near-epoch"] = epoch - timedelta(minutes=75)
    events = []
    for device, at in starts.items():
        for k in range(40):
            at += rng.choice(gaps)
            page = rng.random() < 0.7
            # Events at one instant share a path, so which of them is first does not matter.
            path = f"/p{int(at.timestamp() * 1e6) % 5}" if page else None
            events.append(event_factory(anonymous_id=device, type="page" if page else "track", event="E", path=path,
                                        timestamp=at))
    # 58 minutes apart, on either side of the epoch: two sessions (rounding toward zero would
    # make one slice of both).
    events += [event_factory(anonymous_id="epoch", type="page", path="/", timestamp=epoch + timedelta(minutes=k))
               for k in (-29, 29)]
    write_lake(Settings(_env_file=None, lake_dir=tmp_path / "edges"), events)
    con = connect(Settings(_env_file=None, lake_dir=tmp_path / "edges"))
    df = sessionize(con, Range(epoch - timedelta(days=1), T0 + timedelta(days=30)), timeout_minutes=30)
    got = [(r.visitor, r.session_start.to_pydatetime(), r.session_end.to_pydatetime(), r.event_count, r.page_views,
            *(None if pd.isna(p) else p for p in (r.entry_path, r.exit_path))) for r in df.itertuples()]
    expected = _sessions_by_hand(events, timeout)
    assert len(expected) > 40 and got == expected
    assert df.groupby("visitor")["session_number"].apply(list).to_dict() == {
        d: list(range(1, n + 1)) for d, n in df.groupby("visitor").size().items()}


def test_cli_shows_missing_values_as_null(tmp_path, event_factory, write_lake):
    import json
    import subprocess
    import sys

    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake")
    write_lake(settings, [event_factory(anonymous_id="reader", type="page", path="/", timestamp=m(0)),
                          event_factory(anonymous_id="backend", type="track", event="Ping", path=None,
                                        timestamp=m(1))])
    env = {"CLICKSTREAM_LAKE_DIR": str(tmp_path / "lake"), "CLICKSTREAM_STATE_DIR": str(tmp_path / "state"),
           "PATH": "/usr/bin:/bin"}
    args = [sys.executable, "-m", "clickstream", "analyze", "sessions", "--since", "2026-11-20T09:00:00",
            "--until", "2026-11-20T11:00:00"]
    as_json = subprocess.run(args + ["--format", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    rows = {row["visitor"]: row for row in json.loads(as_json.stdout)}
    assert rows["backend"]["entry_path"] is None and rows["backend"]["page_views"] == 0
    assert rows["reader"]["entry_path"] == "/"
    table = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert "NULL" in table.stdout and "nan" not in table.stdout
    zero = subprocess.run(args + ["--timeout", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert zero.returncode == 2 and "--timeout" in zero.stderr
