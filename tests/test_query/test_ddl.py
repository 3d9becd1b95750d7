import pytest

from clickstream.lake import SCHEMAS
from query.ddl import ddl


@pytest.mark.parametrize("engine", ["athena", "trino"])
def test_every_table_and_column_is_declared(engine):
    text = ddl(engine, "my-bucket")
    for table, schema in SCHEMAS.items():
        assert f"s3://my-bucket/{table}/" in text
        block = text.split(f"{table} (", 1)[1].split("\n)", 1)[0]
        for field in schema:
            assert f"{field.name}" in block, (table, field.name)
    if engine == "athena":
        assert text.count("PARTITIONED BY (`dt` string, `hour` string)") == len(SCHEMAS)
        assert "`timestamp` timestamp" in text
    else:
        assert text.count("partitioned_by = ARRAY['dt', 'hour']") == len(SCHEMAS)
        assert text.count("sync_partition_metadata('clickstream'") == len(SCHEMAS)
