"""Opening a DuckDB connection whose views are the lake's tables.

DuckDB cannot download extensions on machines without internet, so the httpfs
extension is loaded from the ``duckdb-extension-httpfs`` wheel, which is pinned
to the same version as ``duckdb``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import duckdb_extension_httpfs
import pyarrow as pa

from clickstream.lake import OBJECT_NAME_PATTERN, RANGE_PATTERN, SCHEMAS, table_glob
from clickstream.settings import Settings


class QueryError(Exception):
    """The SQL could not run: the message is DuckDB's, fit to show to the user."""


def httpfs_extension_path() -> Path:
    return (
        Path(duckdb_extension_httpfs.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "httpfs.duckdb_extension"
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _lake_root(settings: Settings) -> str:
    if settings.lake_dir is not None:
        return str(settings.lake_dir.resolve())
    return settings.lake_root


def connect(settings: Settings, views: ViewCache | None = None) -> duckdb.DuckDBPyConnection:
    """A connection whose views are the lake's tables, locked down for untrusted SQL.

    A caller that keeps the connection and refreshes its views (the dashboard) passes a
    :class:`ViewCache` and hands the same one to every :func:`refresh_views` of this connection.

    It can read the lake and nothing else on the filesystem, and its settings are locked;
    :func:`run_query` also lets through only one SELECT (or EXPLAIN) per call, so a SQL box
    in the dashboard cannot write, attach, install or reconfigure anything.
    """
    con = duckdb.connect()
    for statement in connection_settings():
        con.execute(statement)
    if settings.lake_dir is None:
        con.execute(f"LOAD {_quote(str(httpfs_extension_path()))}")
        endpoint = urlsplit(settings.s3_endpoint_url)
        con.execute(
            f"""CREATE SECRET lake (
                TYPE s3, KEY_ID {_quote(settings.s3_access_key)}, SECRET {_quote(settings.s3_secret_key)},
                REGION {_quote(settings.s3_region)}, ENDPOINT {_quote(endpoint.netloc)},
                URL_STYLE 'path', USE_SSL {str(endpoint.scheme == "https").lower()})"""
        )
    refresh_views(con, settings, views)
    root = _lake_root(settings).rstrip("/") + "/"
    con.execute(f"SET allowed_directories = [{_quote(root)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def connection_settings() -> list[str]:
    """The SET statements :func:`connect` runs before locking the configuration.

    * ``TimeZone = 'UTC'``: the lake's timestamps and its ``dt``/``hour`` partitions are UTC, so
      day and hour buckets come out the same whether computed from the timestamp or from the
      partition columns, whatever the machine's time zone.

    Lake objects are never modified once written (a key names the offsets it holds, and a retried
    upload writes the same rows), so what DuckDB learns about an object can be kept for the life
    of the connection:

    * ``parquet_metadata_cache``: each object's footer is parsed once per connection (when the
      views are bound) instead of at every query; with thousands of small objects that parsing
      was a large share of every query.
    * ``enable_http_metadata_cache``: on S3, DuckDB's cache of object bytes no longer sends one
      HEAD per object at every query to revalidate what it holds.

    The thread count stays DuckDB's default (one per core). On S3, 8 threads on 2 cores halved
    the first query on a new connection (more requests in flight) but made repeated queries,
    served from the caches, 40-70% slower, and those are what a long-lived connection runs.
    """
    return [
        "SET TimeZone = 'UTC'",
        "SET parquet_metadata_cache = true",
        "SET enable_http_metadata_cache = true",
    ]


def live_files_sql(pattern: str) -> str:
    """SQL listing a table's live objects: those not superseded by a compacted object.

    Compaction writes one object whose offset ranges (one per Kafka partition, in its name)
    cover the small objects it merged, in the same hour folder, and deletes the small ones only
    after a grace period. An object each of whose ranges lies inside the same partition's range
    of another object is not live: the pairs are counted per range, and an object with as many
    covered ranges as it has is dropped. Objects not named as the sink and compaction name them
    are read as they are. (Anti joins: DuckDB 1.5.5 returned wrong rows for the same condition
    written as a correlated NOT EXISTS.)
    """
    return f"""
        WITH files AS (
            SELECT file, regexp_extract(file, '^(.*)/[^/]*$', 1) AS dir,
                   regexp_extract(file, '/{OBJECT_NAME_PATTERN}$', 2) AS spec
            FROM glob({_quote(pattern)})),
        ranges AS (
            SELECT file, dir, regexp_extract(r, '^{RANGE_PATTERN}$', ['p', 'f', 'l']) AS k
            FROM (SELECT file, dir, unnest(regexp_extract_all(spec, '{RANGE_PATTERN}')) AS r
                  FROM files WHERE spec <> '')),
        parsed AS (SELECT file, dir, k.p::INTEGER AS p, k.f::BIGINT AS f, k.l::BIGINT AS l FROM ranges),
        counts AS (SELECT file, count(*) AS n FROM parsed GROUP BY file),
        covered AS (
            SELECT a.file, count(*) AS n FROM parsed a JOIN parsed b
                ON b.dir = a.dir AND b.p = a.p AND b.f <= a.f AND b.l >= a.l AND b.file <> a.file
            GROUP BY a.file, b.file),
        superseded AS (SELECT DISTINCT c.file FROM covered c JOIN counts USING (file, n))
        SELECT f.file FROM files f ANTI JOIN superseded s ON s.file = f.file
        ORDER BY f.file"""


@dataclass
class ViewCache:
    """What a connection's views were last defined over, so that a refresh finding the same objects
    changes nothing, and each object's footer is read for its columns once.

    Objects are never rewritten in place (a key follows from Kafka offsets; compaction writes new
    keys), so a file's columns, once read, stay true. On S3 with thousands of objects this makes
    a refresh one listing (0.25 s for 3,600 objects locally on SeaweedFS) instead of 0.7 s.
    """

    files: dict[str, list[str]] = field(default_factory=dict)  # table -> the live files its view reads
    signatures: dict[str, tuple[int, str]] = field(default_factory=dict)  # file -> (column count, columns)


def files_by_schema(con: duckdb.DuckDBPyConnection, files: list[str],
                    known: dict[str, tuple[int, str]] | None = None) -> list[list[str]]:
    """The files grouped by their columns (names and types), the group with most columns first.

    Reading each object's footer here also fills DuckDB's Parquet metadata cache. ``known`` holds
    the columns of files already read, and gets those of the others.
    """
    known = {} if known is None else known
    new = [f for f in files if f not in known]
    if new:
        listed = ", ".join(_quote(f) for f in new)
        for file, columns, signature in con.execute(f"""
                SELECT file_name, count(*), string_agg(name || ' ' || duckdb_type, ', ' ORDER BY name)
                FROM parquet_schema([{listed}]) WHERE num_children IS NULL GROUP BY file_name""").fetchall():
            known[file] = (columns, signature)
    groups: dict[str, list[str]] = {}
    width: dict[str, int] = {}
    for file in files:
        columns, signature = known[file]
        groups.setdefault(signature, []).append(file)
        width[signature] = columns
    order = sorted(groups, key=lambda sig: -width[sig])
    return [sorted(groups[sig]) for sig in order]


def _read_parquet(files: list[str]) -> str:
    listed = ", ".join(_quote(f) for f in files)
    return (f"SELECT * FROM read_parquet([{listed}], hive_partitioning = true, "
            f"hive_types = {{'dt': DATE, 'hour': INTEGER}})")


def refresh_views(con: duckdb.DuckDBPyConnection, settings: Settings, views: ViewCache | None = None) -> None:
    """(Re)define one view per table over its live objects at this moment.

    The view names its files explicitly, listed once: a view over a glob would list the
    objects again when a query is planned, and a compaction finishing between the two
    listings could hide rows. Objects stay readable for the compaction grace period, so
    a query planned on this list reads each row exactly once. A table with no objects yet
    is an empty view of its schema.

    Objects written before a column existed lack it: files with the same columns are read
    together and the groups combined with ``UNION ALL BY NAME`` (a missing column reads as
    NULL). That is what ``read_parquet(union_by_name = true)`` does, but that option reads and
    merges every object's schema again each time a query is planned, a large share of every
    query over thousands of objects; here the schemas are compared once, now.

    With ``views`` (the :class:`ViewCache` of this connection) a table whose live objects are
    the ones its view already reads is left as it is, and only new objects' footers are read.
    """
    root = _lake_root(settings)
    redefined = False
    for table, schema in SCHEMAS.items():
        files = [row[0] for row in con.execute(live_files_sql(table_glob(root, table))).fetchall()]
        if views is not None and views.files.get(table) == files:
            continue  # the view already reads exactly these objects
        redefined = True
        if files:
            groups = files_by_schema(con, files, None if views is None else views.signatures)
            union = " UNION ALL BY NAME ".join(_read_parquet(group) for group in groups)
            con.execute(f"CREATE OR REPLACE VIEW {table} AS {union}")
        else:
            empty = pa.Table.from_pylist([], schema=schema).append_column(
                "dt", pa.array([], pa.date32())
            ).append_column("hour", pa.array([], pa.int32()))
            con.register(f"_empty_{table}", empty)
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM _empty_{table}")
        if views is not None:
            views.files[table] = files
    if views is not None and redefined:  # forget the columns of objects compaction has retired
        live = {f for files in views.files.values() for f in files}
        for gone in [f for f in views.signatures if f not in live]:
            del views.signatures[gone]


_READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but a single SELECT or EXPLAIN, judged by DuckDB's own parser."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    if len(statements) != 1:
        raise QueryError(f"send exactly one statement (got {len(statements)})")
    if statements[0].type not in _READ_ONLY:
        raise QueryError(f"only SELECT queries are allowed here (got {statements[0].type.name})")


def run_query(con: duckdb.DuckDBPyConnection, sql: str, refresh: Settings | None = None,
              views: ViewCache | None = None):
    """Run one read-only statement and return (column names, rows).

    With ``refresh`` (the settings), the views are first brought up to date with the lake,
    for long-lived connections.
    """
    check_read_only(con, sql)
    if refresh is not None:
        refresh_views(con, refresh, views)
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
