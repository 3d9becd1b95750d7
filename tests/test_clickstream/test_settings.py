from pathlib import Path

import pytest

from clickstream.settings import Settings, SettingsError, load_settings
from clickstream.topics import Topics


def test_reads_prefixed_environment(monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_API_PORT", "9100")
    monkeypatch.setenv("CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS", "kafka:29092")
    s = load_settings(_env_file=None)
    assert s.api_port == 9100
    assert s.bootstrap_servers == "kafka:29092"
    assert not s.manages_kafka
    assert s.manages_s3


def test_defaults_point_at_the_local_stack():
    s = Settings(_env_file=None)
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.s3_endpoint_url == "http://127.0.0.1:8333"
    assert s.lake_root == "s3://clickstream"
    assert (s.api_port, s.dashboard_port, s.s3_port, s.broker_port) == (8000, 8501, 8333, 9092)
    assert s.topic_partitions == 4


def test_local_lake_directory(tmp_path):
    s = Settings(_env_file=None, lake_dir=tmp_path)
    assert s.lake_root == tmp_path.resolve().as_uri()


def test_invalid_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_FLUSH_INTERVAL_S", "2000")
    with pytest.raises(SettingsError, match="CLICKSTREAM_FLUSH_INTERVAL_S"):
        load_settings(_env_file=None)


def test_settings_are_frozen():
    s = Settings(_env_file=None)
    with pytest.raises(Exception):
        s.api_port = 1


def test_as_env_round_trips(monkeypatch):
    original = Settings(_env_file=None, api_port=9001, state_dir=Path("/tmp/x"), webhook_url="http://h/x",
                        trusted_proxies=["10.0.0.0/8", "fd00::/8"], anonymize_ip=False)
    for key, value in original.as_env().items():
        monkeypatch.setenv(key, value)
    assert Settings(_env_file=None) == original


def test_topic_names_and_groups_follow_the_prefix():
    t = Topics.from_prefix("clickstream.")
    assert t.all() == [
        "clickstream.raw",
        "clickstream.invalid",
        "clickstream.events",
        "clickstream.sessions",
        "clickstream.metrics",
        "clickstream.reactions",
        "clickstream.dead-letters",
        "clickstream.reactor-deliveries",
    ]
    assert t.config("clickstream.reactor-deliveries") == {"cleanup.policy": "compact"}
    assert t.config("clickstream.reactions") == {}
    assert t.group("sink") == "clickstream.sink"
