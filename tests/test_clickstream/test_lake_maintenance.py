"""`clickstream compact` and `clickstream retention`: one run at a time per lake on a machine."""

from click.testing import CliRunner

from clickstream.cli import cli
from clickstream.settings import Settings
from sink.maintenance import maintenance_lock


def test_a_second_run_on_the_same_lake_stops_with_a_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env file of the project's
    lake = tmp_path / "lake"
    env = {"CLICKSTREAM_LAKE_DIR": str(lake)}
    runner = CliRunner()
    with maintenance_lock(Settings(_env_file=None, lake_dir=lake)):
        compact = runner.invoke(cli, ["compact", "--no-offset-check"], env=env)
        retention = runner.invoke(cli, ["retention", "--days", "30"], env=env)
        other_lake = runner.invoke(cli, ["compact", "--no-offset-check"], env={"CLICKSTREAM_LAKE_DIR": str(tmp_path / "b")})
    for result in (compact, retention):
        assert result.exit_code == 1
        assert "another compaction or retention run" in result.output and "in progress" in result.output
    assert other_lake.exit_code == 0, other_lake.output
    done = runner.invoke(cli, ["compact", "--no-offset-check"], env=env)
    assert done.exit_code == 0, done.output
    assert "merged 0 objects into 0" in done.output
