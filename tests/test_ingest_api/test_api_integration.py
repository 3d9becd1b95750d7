"""The API against the real Tansu broker: what gets a 2xx is on the raw topic, what is rejected is on
the invalid topic with its reason; with no broker, 503."""

import asyncio
import gzip
import json

import pytest
from fastapi.testclient import TestClient

from clickstream.events import Event, RejectedEvent
from clickstream.kafka import create_topics
from clickstream.sources import RateLimit, Source, SourceRegistry
from clickstream.stack.probes import free_port
from clickstream.topics import Topics
from ingest_api.app import create_app
from ingest_api.producer import KafkaEventProducer

pytestmark = pytest.mark.integration


@pytest.fixture
def api(settings_factory):
    """A running app on its own topics; yields (client, settings)."""
    clients = []

    def make(sources=None, **overrides):
        settings = settings_factory(**overrides)
        asyncio.run(create_topics(settings))
        client = TestClient(create_app(settings, KafkaEventProducer(settings), sources=sources))
        client.__enter__()
        clients.append(client)
        return client, settings

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def test_accepted_events_are_on_the_raw_topic_keyed_by_device(api, read_topic):
    client, settings = api()
    key = settings.demo_write_key
    page = client.post("/v1/page", auth=(key, ""), json={"anonymousId": "a1", "name": "Docs",
                                                          "properties": {"url": "http://x.test/docs?utm_source=gh"}},
                       headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36"})
    track = client.post("/v1/track", auth=(key, ""), json={"userId": "u1", "event": "Signed Up", "messageId": "m-42"})
    assert page.status_code == 200 and page.json()["success"] is True
    assert track.status_code == 200 and track.json()["event_id"] == "m-42"

    records = read_topic(settings.bootstrap_servers, Topics.from_settings(settings).raw, expected=2)
    assert len(records) == 2
    events = {r.key: Event.from_bytes(r.value) for r in records}
    a1 = events[b"a1"]
    assert (a1.path, a1.host, a1.utm_source, a1.source) == ("/docs", "x.test", "gh", "demo")
    assert (a1.browser, a1.os, a1.device_type, a1.is_bot) == ("Chrome", "Windows", "desktop", False)
    assert a1.ip is None  # the test client's peer is not an IP address
    assert a1.event_id == page.json()["event_id"]
    assert events[b"u1"].event == "Signed Up" and events[b"u1"].event_id == "m-42"


def test_each_key_keeps_its_partition_and_order_across_producers(settings_factory, read_topic):
    """The API writes through several producers; a key's records still go to the partition Kafka's
    default partitioner gives it (as with one producer), in the order they were sent."""
    from aiokafka.partitioner import DefaultPartitioner

    settings = settings_factory(api_producers=3)  # not a divisor of the 4 partitions
    asyncio.run(create_topics(settings))
    topic = Topics.from_settings(settings).raw
    sent = [(topic, f"visitor-{i % 13}", json.dumps({"n": i}).encode()) for i in range(300)]

    async def send() -> None:
        producer = KafkaEventProducer(settings)
        try:
            for i in range(0, len(sent), 30):  # one call after another: the order sent is defined
                await producer.send_many(sent[i:i + 30])
        finally:
            await producer.stop()

    asyncio.run(send())
    records = read_topic(settings.bootstrap_servers, topic, expected=len(sent))
    assert len(records) == len(sent)
    partitions = sorted({r.partition for r in records})
    assert partitions == list(range(settings.topic_partitions))  # 13 keys spread over all four
    for key in {k for _, k, _ in sent}:
        mine = sorted((r for r in records if r.key == key.encode()), key=lambda r: (r.partition, r.offset))
        assert {r.partition for r in mine} == {DefaultPartitioner()(key.encode(), partitions, partitions)}
        assert [r.value for r in mine] == [v for _, k, v in sent if k == key]


def test_batch_keeps_valid_events_and_rejects_bad_ones_by_index(api, read_topic):
    client, settings = api()
    bad = {3: {"type": "track", "userId": "u"},                      # no event name
           11: {"type": "page"},                                      # no identity
           20: {"type": "nope", "userId": "u"},                       # unknown type
           33: "not an object",
           47: {"type": "track", "userId": "u", "event": "x", "timestamp": "yesterday"},
           58: {"type": "group", "userId": "u"},                      # no groupId
           99: {"type": "track", "userId": "u", "event": "x", "properties": {"blob": "x" * 40_000}}}
    calls = [bad.get(i, {"type": "track", "userId": f"u{i % 10}", "event": "Viewed", "properties": {"i": i}})
             for i in range(100)]
    response = client.post("/v1/batch", auth=(settings.demo_write_key, ""),
                           json={"batch": calls, "sentAt": "2026-11-27T10:00:00Z"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 93
    assert sorted(r["index"] for r in body["rejected"]) == sorted(bad)
    assert all(r["reason"] for r in body["rejected"])

    topics = Topics.from_settings(settings)
    raw = read_topic(settings.bootstrap_servers, topics.raw, expected=93)
    assert len(raw) == 93
    assert sorted(Event.from_bytes(r.value).properties["i"] for r in raw) == [i for i in range(100) if i not in bad]
    invalid = [RejectedEvent.from_bytes(r.value) for r in
               read_topic(settings.bootstrap_servers, topics.invalid, expected=7)]
    assert sorted(r.index for r in invalid) == sorted(bad)
    by_index = {r.index: r for r in invalid}
    assert "requires 'event'" in by_index[3].reason and "groupId" in by_index[58].reason
    assert "limit is 32768 bytes" in by_index[99].reason
    assert json.loads(by_index[11].payload) == {"type": "page"}
    assert all(r.source == "demo" and r.endpoint == "batch" for r in invalid)


def test_browser_style_calls_gzip_and_every_call_type(api, read_topic):
    client, settings = api()
    key = settings.demo_write_key
    calls = [
        ("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}}),
        ("/v1/group", {"userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}),
        ("/v1/alias", {"userId": "u1", "previousId": "anon-1"}),
        ("/v1/screen", {"anonymousId": "m1", "name": "Home"}),
        ("/v1/t", {"anonymousId": "b1", "event": "Clicked", "writeKey": key}),  # analytics.js style
    ]
    for path, body in calls:
        headers = {"Content-Type": "text/plain"} if "writeKey" in body else {}
        auth = None if "writeKey" in body else (key, "")
        r = client.post(path, content=json.dumps(body), headers=headers, auth=auth)
        assert r.status_code == 200, (path, r.text)
    zipped = gzip.compress(json.dumps({"batch": [{"type": "page", "anonymousId": "z1", "name": "Zip"}]}).encode())
    r = client.post("/v1/batch", content=zipped, auth=(key, ""),
                    headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 1

    events = [Event.from_bytes(r.value) for r in
              read_topic(settings.bootstrap_servers, Topics.from_settings(settings).raw, expected=6)]
    by_type = {e.type: e for e in events}
    assert set(by_type) == {"identify", "group", "alias", "screen", "track", "page"}
    assert by_type["identify"].traits == {"plan": "pro"}
    assert by_type["group"].group_id == "g1" and by_type["alias"].previous_id == "anon-1"
    assert "writeKey" not in json.dumps(by_type["track"].context)  # the key is not stored


def test_malformed_json_is_400_and_kept_on_the_invalid_topic(api, read_topic):
    client, settings = api()
    r = client.post("/v1/track", content=b'{"userId": "u1", "event": ', auth=(settings.demo_write_key, ""))
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    [record] = read_topic(settings.bootstrap_servers, Topics.from_settings(settings).invalid, expected=1)
    rejected = RejectedEvent.from_bytes(record.value)
    assert rejected.payload == '{"userId": "u1", "event": ' and "malformed JSON" in rejected.reason


def test_cors_per_source_and_rate_limit(api):
    web = Source("web", "wk_web_123456", ("https://shop.example",), RateLimit(per_second=1, burst=3))
    client, settings = api(sources=SourceRegistry([web]))
    preflight = client.options("/v1/track", headers={"Origin": "https://shop.example",
                                                     "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    body = {"anonymousId": "a", "event": "x"}
    other = client.post("/v1/track", json=body, auth=(web.write_key, ""), headers={"Origin": "https://evil.example"})
    assert other.status_code == 403
    allowed = [client.post("/v1/track", json=body, auth=(web.write_key, ""), headers={"Origin": "https://shop.example"})
               for _ in range(4)]
    assert [a.status_code for a in allowed] == [200, 200, 200, 429]
    assert int(allowed[-1].headers["Retry-After"]) >= 1


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
            assert client.get("/readyz").status_code == 200
            broker.stop()
            answers = [client.post("/v1/page", auth=(settings.demo_write_key, ""), json=body) for _ in range(2)]
            answers.append(client.post("/v1/batch", auth=(settings.demo_write_key, ""),
                                       json={"batch": [{"type": "page", **body}]}))
            ready = client.get("/readyz")
    finally:
        broker.stop()
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert all(a.headers.get("Retry-After") for a in answers)
    assert all(a.json()["success"] is False for a in answers)
    assert ready.status_code == 503
