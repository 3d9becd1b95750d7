"""CREATE TABLE statements for bigger engines over the same lake (``clickstream ddl``)."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa

from clickstream.lake import SCHEMAS

Engine = Literal["athena", "trino"]

_TYPES = {
    "athena": {pa.string(): "string", pa.bool_(): "boolean", pa.int32(): "int", pa.int64(): "bigint",
               pa.float64(): "double"},
    "trino": {pa.string(): "varchar", pa.bool_(): "boolean", pa.int32(): "integer", pa.int64(): "bigint",
              pa.float64(): "double"},
}


def _type(engine: Engine, t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        # Parquet stores UTC instants; both engines read them as plain timestamps in UTC.
        return "timestamp" if engine == "athena" else "timestamp(6)"
    return _TYPES[engine][t]


def _athena(table: str, schema: pa.Schema, location: str) -> str:
    columns = ",\n".join(f"  `{f.name}` {_type('athena', f.type)}" for f in schema)
    return f"""CREATE EXTERNAL TABLE IF NOT EXISTS {table} (
{columns}
)
PARTITIONED BY (`dt` string, `hour` string)
STORED AS PARQUET
LOCATION '{location}/'
TBLPROPERTIES (
  'parquet.compression' = 'ZSTD',
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2020-01-01,NOW',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'storage.location.template' = '{location}/dt=${{dt}}/hour=${{hour}}/'
);"""


def _trino(table: str, schema: pa.Schema, location: str, catalog_schema: str) -> str:
    columns = ",\n".join(f'  "{f.name}" {_type("trino", f.type)}' for f in schema)
    return f"""CREATE TABLE IF NOT EXISTS {catalog_schema}.{table} (
{columns},
  "dt" varchar,
  "hour" varchar
)
WITH (
  format = 'PARQUET',
  partitioned_by = ARRAY['dt', 'hour'],
  external_location = '{location}/'
);
CALL system.sync_partition_metadata('{catalog_schema.split(".")[-1]}', '{table}', 'ADD');"""


def ddl(engine: Engine, bucket: str, catalog_schema: str = "hive.clickstream") -> str:
    """Statements for every lake table. Readers of the lake must skip objects that compaction
    superseded (see README); Athena and Trino read every object, so run them on compacted,
    grace-expired partitions or after `clickstream compact` has deleted the merged-away objects."""
    statements = []
    for table, schema in SCHEMAS.items():
        location = f"s3://{bucket}/{table}"
        statements.append(_athena(table, schema, location) if engine == "athena"
                          else _trino(table, schema, location, catalog_schema))
    return "\n\n".join(statements) + "\n"
