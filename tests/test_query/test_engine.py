from datetime import datetime, timedelta, timezone

import pytest

from clickstream.settings import Settings
from query.engine import QueryError, ViewCache, connect, httpfs_extension_path, refresh_views, run_query
from query.traffic import last_event_time
from sink.destination import LakeDestination
from sink.parquet import to_parquet
from sink.tables import TABLES


def event_row(event):
    return TABLES[0].row(event)

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def test_empty_lake_has_empty_tables(tmp_path):
    con = connect(Settings(_env_file=None, lake_dir=tmp_path))
    assert run_query(con, "select count(*) from events") == (["count_star()"], [(0,)])


def test_queries_a_local_lake_with_hive_partitions(tmp_path, event_factory, write_lake):
    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake")
    events = [event_factory(timestamp=T0 + timedelta(minutes=40 * i), path=f"/p{i % 2}",
                            properties={"plan": "pro" if i % 3 == 0 else "free"}) for i in range(6)]
    write_lake(settings, events)
    con = connect(settings)
    _, rows = run_query(con, "select hour, count(*) from events group by 1 order by 1")
    expected = {}
    for e in events:
        expected[e.timestamp.hour] = expected.get(e.timestamp.hour, 0) + 1
    assert rows == sorted(expected.items())
    _, rows = run_query(con, "select count(*) from events where properties->>'$.plan' = 'pro'")
    assert rows == [(2,)]


def test_bad_sql_is_a_query_error(tmp_path):
    con = connect(Settings(_env_file=None, lake_dir=tmp_path))
    with pytest.raises(QueryError, match="nope"):
        run_query(con, "select * from nope")


def test_httpfs_extension_ships_with_the_wheel():
    assert httpfs_extension_path().is_file()


@pytest.mark.parametrize(
    "sql,message",
    [
        ("copy (select 1) to 'out.csv'", "only SELECT"),
        ("create table t as select 1", "only SELECT"),
        ("set threads = 1", "only SELECT"),
        ("attach 'x.db'", "only SELECT"),
        ("install httpfs", "only SELECT"),
        ("select 1; select 2", "exactly one statement"),
        ("select * from read_csv('/etc/passwd')", "disabled"),
        ("select * from read_text('/etc/hostname')", "disabled"),
        ("select * from glob('/*')", "disabled"),
    ],
)
def test_the_connection_is_read_only_and_confined_to_the_lake(tmp_path, sql, message):
    con = connect(Settings(_env_file=None, lake_dir=tmp_path / "lake"))
    with pytest.raises(QueryError, match=message):
        run_query(con, sql)


def test_settings_are_locked_even_outside_run_query(tmp_path):
    con = connect(Settings(_env_file=None, lake_dir=tmp_path / "lake"))
    with pytest.raises(Exception, match="configuration"):
        con.execute("SET enable_external_access = true")


def test_objects_superseded_by_a_compacted_object_are_not_read(tmp_path, event_factory):
    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake")
    dest = LakeDestination.from_settings(settings)
    hour = "events/dt=2026-11-27/hour=09"
    spec = TABLES[0]

    def put(name, n):
        rows = [event_row(event_factory(timestamp=T0)) for _ in range(n)]
        dest.put(f"{hour}/{name}.parquet", to_parquet(rows, spec.schema))

    put("events-p0-0-9", 10)
    put("events-p0-10-19", 10)
    put("events-p1-0-4", 5)
    assert run_query(connect(settings), "select count(*) from events")[1] == [(25,)]
    put("events-p0-0-19", 20)  # the compacted object: the two small p0 ones are now superseded
    assert run_query(connect(settings), "select count(*) from events")[1] == [(25,)]
    put("events-p1-5-9", 5)  # a neighbour, not a superset: read
    assert run_query(connect(settings), "select count(*) from events")[1] == [(30,)]
    put("events-p0-0-19-p1-0-4", 25)  # a merge across partitions: supersedes all but p1-5-9
    assert run_query(connect(settings), "select count(*) from events")[1] == [(30,)]
    put("events-p0-0-19-p1-0-9-p2-0-0", 31)  # and this one supersedes everything
    assert run_query(connect(settings), "select count(*) from events")[1] == [(31,)]
    put("export", 2)  # an object not named as the sink names them is read as it is
    assert run_query(connect(settings), "select count(*) from events")[1] == [(33,)]


def test_older_objects_with_fewer_columns_still_read(tmp_path, event_factory):
    """Schema evolution by name: an object written before a column existed reads it as NULL."""
    import pyarrow as pa

    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake")
    dest = LakeDestination.from_settings(settings)
    hour = "events/dt=2026-11-27/hour=09"
    new_rows = [event_row(event_factory(timestamp=T0, browser="Chrome")) for _ in range(3)]
    dest.put(f"{hour}/events-p0-10-12.parquet", to_parquet(new_rows, TABLES[0].schema))
    old_schema = pa.schema([f for f in TABLES[0].schema if f.name not in ("browser", "os", "traits")])
    old_rows = [{k: v for k, v in event_row(event_factory(timestamp=T0)).items() if k in old_schema.names}
                for _ in range(2)]
    dest.put(f"{hour}/events-p0-0-1.parquet", to_parquet(old_rows, old_schema))
    _, rows = run_query(connect(settings), "select count(*), count(browser), count(event_id) from events")
    assert rows == [(5, 3, 5)]


def test_connect_keeps_metadata_in_utc_and_stays_locked(tmp_path):
    """The caches are on and the session is UTC, yet the sandbox holds: no file outside the lake,
    no setting changed."""
    con = connect(Settings(_env_file=None, lake_dir=tmp_path / "lake"))
    names = ["parquet_metadata_cache", "enable_http_metadata_cache", "TimeZone", "lock_configuration",
             "enable_external_access"]
    current = dict(con.execute("select name, value from duckdb_settings() where name in ?", [names]).fetchall())
    assert current == {"parquet_metadata_cache": "true", "enable_http_metadata_cache": "true", "TimeZone": "UTC",
                       "lock_configuration": "true", "enable_external_access": "false"}
    with pytest.raises(Exception, match="configuration"):
        con.execute("SET parquet_metadata_cache = false")
    with pytest.raises(QueryError, match="disabled"):
        run_query(con, "select * from read_csv('/etc/passwd')")


def test_objects_of_several_schemas_read_as_one_table_in_the_current_order(tmp_path, event_factory):
    """Objects are grouped by their columns; the view has the newest schema's column order and
    reads a column an older object lacks as NULL."""
    import pyarrow as pa

    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake")
    dest = LakeDestination.from_settings(settings)
    hour = "events/dt=2026-11-27/hour=09"
    schema = TABLES[0].schema
    old_schema = pa.schema([f for f in schema if f.name != "os"])
    old_rows = [{k: v for k, v in event_row(event_factory(timestamp=T0, path="/old")).items() if k != "os"}
                for _ in range(2)]
    dest.put(f"{hour}/events-p0-0-1.parquet", to_parquet(old_rows, old_schema))
    dest.put(f"{hour}/events-p1-0-0.parquet", to_parquet(old_rows[:1], old_schema))
    new_rows = [event_row(event_factory(timestamp=T0, path="/new", os="Linux")) for _ in range(3)]
    dest.put(f"{hour}/events-p0-2-4.parquet", to_parquet(new_rows, schema))
    con = connect(settings)
    columns, rows = run_query(con, "select path, os, count(*) from events group by all order by 1")
    assert rows == [("/new", "Linux", 3), ("/old", None, 3)]
    columns, _ = run_query(con, "select * from events limit 0")
    assert columns == schema.names + ["dt", "hour"]


def test_a_view_cache_refreshes_only_what_changed(tmp_path, event_factory, write_lake):
    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake")
    write_lake(settings, [event_factory(timestamp=datetime(2026, 11, 20, 10, tzinfo=timezone.utc))])
    views = ViewCache()
    con = connect(settings, views)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    known = dict(views.signatures)
    assert len(known) == 1 and set(views.files) == {"events", "invalid_events", "sessions", "metrics", "reactions"}

    refresh_views(con, settings, views)  # nothing new: the views stay as they are
    assert views.signatures == known
    write_lake(settings, [event_factory(timestamp=datetime(2026, 11, 21, 10, tzinfo=timezone.utc))])
    refresh_views(con, settings, views)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 2
    assert len(views.signatures) == 2 and all(views.signatures[f] == known[f] for f in known)


def test_newest_event_comes_from_the_newest_day(tmp_path, event_factory, write_lake):
    settings = Settings(_env_file=None, lake_dir=tmp_path / "lake")
    assert last_event_time(connect(settings)) is None
    times = [datetime(2026, 11, d, h, tzinfo=timezone.utc) for d, h in ((3, 23), (20, 1), (20, 17), (9, 5))]
    write_lake(settings, [event_factory(timestamp=t) for t in times])
    assert last_event_time(connect(settings)) == datetime(2026, 11, 20, 17, tzinfo=timezone.utc)
