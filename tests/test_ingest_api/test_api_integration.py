"""The API against the real Tansu broker: what gets a 2xx is on the raw topic; with no broker, 503."""

import asyncio

import pytest
from fastapi.testclient import TestClient

from clickstream.events import Event
from clickstream.kafka import create_topics
from clickstream.stack.probes import free_port
from clickstream.topics import Topics
from ingest_api.app import create_app
from ingest_api.producer import KafkaEventProducer

pytestmark = pytest.mark.integration


def test_accepted_events_are_on_the_raw_topic_keyed_by_visitor(settings_factory, read_topic):
    settings = settings_factory()
    asyncio.run(create_topics(settings))
    key = settings.demo_write_key
    with TestClient(create_app(settings, KafkaEventProducer(settings))) as client:
        page = client.post("/v1/page", auth=(key, ""), json={"anonymousId": "a1", "name": "Docs",
                                                              "properties": {"url": "http://x.test/docs?utm_source=gh"}})
        track = client.post("/v1/track", auth=(key, ""), json={"userId": "u1", "event": "Signed Up", "messageId": "m-42"})
        bad = client.post("/v1/track", auth=(key, ""), json={"userId": "u1"})
    assert page.status_code == 200 and page.json()["success"] is True
    assert track.status_code == 200 and track.json()["event_id"] == "m-42"
    assert bad.status_code == 400

    records = read_topic(settings.bootstrap_servers, Topics.from_settings(settings).raw, expected=2)
    assert len(records) == 2
    events = {r.key: Event.from_bytes(r.value) for r in records}
    assert events[b"a1"].path == "/docs" and events[b"a1"].utm_source == "gh" and events[b"a1"].source == "demo"
    assert events[b"a1"].event_id == page.json()["event_id"]
    assert events[b"u1"].event == "Signed Up" and events[b"u1"].event_id == "m-42"


def test_broker_stopped_means_503_never_2xx(settings_factory, s3_server, tmp_path):
    from conftest import start_tansu

    port = free_port()
    broker = start_tansu(port, f"http://127.0.0.1:{s3_server.port}", tmp_path / "tansu.log", storage="memory://tansu/")
    try:
        settings = settings_factory(kafka_bootstrap_servers=f"127.0.0.1:{port}", produce_timeout_s=2)
        asyncio.run(create_topics(settings))
        body = {"anonymousId": "a1", "name": "Home"}
        with TestClient(create_app(settings, KafkaEventProducer(settings))) as client:
            assert client.post("/v1/page", auth=(settings.demo_write_key, ""), json=body).status_code == 200
            broker.stop()
            answers = [client.post("/v1/page", auth=(settings.demo_write_key, ""), json=body) for _ in range(3)]
    finally:
        broker.stop()
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert all(a.headers.get("Retry-After") for a in answers)
    assert all(a.json()["success"] is False for a in answers)
