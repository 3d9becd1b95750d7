"""Error paths of the HTTP layer. The producers here are stand-ins: one that must never be
reached (the request is rejected before), one whose broker is unreachable."""

import pytest
from fastapi.testclient import TestClient

from clickstream.settings import Settings
from ingest_api.app import MAX_EVENT_BYTES, create_app
from ingest_api.errors import BrokerUnavailable

KEY = "wk_test"


class MustNotProduce:
    async def send_many(self, records):
        raise AssertionError("a rejected request reached the producer")

    async def ready(self, topic):
        return False

    async def stop(self):
        pass


class BrokerDown(MustNotProduce):
    async def send_many(self, records):
        raise BrokerUnavailable("no broker")


def client(producer) -> TestClient:
    settings = Settings(_env_file=None, demo_write_key=KEY)
    return TestClient(create_app(settings, producer))


@pytest.mark.parametrize(
    "kwargs,status,message",
    [
        ({"content": b"[1]"}, 400, "JSON object"),
        ({"content": b"x" * (MAX_EVENT_BYTES + 1)}, 413, "limit"),
        ({"content": b"{}", "headers": {"Content-Type": "application/xml"}}, 415, "content type"),
        ({"content": b"{}", "headers": {"Content-Encoding": "br"}}, 415, "content encoding"),
    ],
)
def test_bad_requests_are_rejected_with_reason(kwargs, status, message):
    response = client(MustNotProduce()).post("/v1/track", auth=(KEY, ""), **kwargs)
    assert response.status_code == status
    assert response.json()["success"] is False
    assert message in response.json()["error"]


@pytest.mark.parametrize("auth", [None, ("wrong", "")])
def test_unknown_or_missing_write_key_is_401(auth):
    response = client(MustNotProduce()).post("/v1/page", auth=auth, json={"anonymousId": "a"})
    assert response.status_code == 401
    assert "write key" in response.json()["error"]


def test_readyz_is_503_without_broker_and_healthz_is_200():
    c = client(BrokerDown())
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 503


def test_broker_down_is_503_with_retry_after():
    response = client(BrokerDown()).post("/v1/page", auth=(KEY, ""), json={"anonymousId": "a"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json()["success"] is False


def test_a_request_streamed_past_the_limit_is_refused():
    def endless():
        for _ in range(10_000):  # 80 MB if it were all read
            yield b" " * 8192

    response = client(MustNotProduce()).post("/v1/batch", content=endless(), auth=(KEY, ""),
                                              headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["error"]


class Accepts(MustNotProduce):
    async def send_many(self, records):
        pass


def test_a_page_url_with_a_broken_host_is_accepted_not_a_server_error():
    response = client(Accepts()).post("/v1/page", auth=(KEY, ""),
                                      json={"anonymousId": "a", "properties": {"url": "http://[x/?utm_source=y"}})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("enabled", [False, True])
def test_fastapi_tracing_follows_the_setting(enabled, monkeypatch):
    import fastapi.telemetry._asgi as native

    asked = []
    monkeypatch.setattr(native.NativeTelemetry, "enabled", lambda self: asked.append(self.config["tracing"]) or False)
    settings = Settings(_env_file=None, demo_write_key=KEY, api_opentelemetry=enabled)
    TestClient(create_app(settings, Accepts())).post("/v1/page", auth=(KEY, ""), json={"anonymousId": "a"})
    assert asked and set(asked) == {enabled}


class Keeps(MustNotProduce):
    def __init__(self):
        self.records = []

    async def send_many(self, records):
        self.records += records


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_json_nested_past_pythons_recursion_limit_is_a_400(path):
    producer = Keeps()
    response = client(producer).post(path, auth=(KEY, ""), content=b"[" * 30000)
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]
    assert [topic.endswith("invalid") for topic, _, _ in producer.records] == [True]  # kept for inspection


def test_a_call_nested_too_deep_is_rejected_and_its_neighbours_kept():
    deep = {"x": 1}
    for _ in range(150):  # parses, but the processor could not read it back
        deep = {"x": deep}
    producer = Keeps()
    calls = [{"type": "track", "anonymousId": "a", "event": "Fine"},
             {"type": "track", "anonymousId": "a", "event": "Deep", "properties": deep},
             {"type": "track", "anonymousId": "a", "event": "Fine too"}]
    response = client(producer).post("/v1/batch", auth=(KEY, ""), json={"batch": calls})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    assert [r["index"] for r in response.json()["rejected"]] == [1]
    assert "levels deep" in response.json()["rejected"][0]["reason"]
    assert [topic.endswith("raw") for topic, _, _ in producer.records] == [True, True, False]
    single = client(Keeps()).post("/v1/track", auth=(KEY, ""), json=calls[1])
    assert single.status_code == 400 and "levels deep" in single.json()["error"]
