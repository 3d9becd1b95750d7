"""The reactor against the real Tansu broker: exactly once per handler across restarts, dead letters and replay."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time

import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from clickstream.cli import cli
from clickstream.kafka import create_topics, producer_config
from clickstream.reactions import DeadLetter, DeliveryRecord
from clickstream.topics import Topics
from reactors.dispatch import ReactorStats
from reactors.main import consume
from reactors.signature import verify
from test_reactors.fixtures import reaction_factory, webhook_receiver  # noqa: F401  (pytest fixtures)

pytestmark = pytest.mark.integration

SECRET = "integration-secret"


async def produce(settings, reactions) -> None:
    await create_topics(settings)
    producer = AIOKafkaProducer(**producer_config(settings))
    await producer.start()
    try:
        for reaction in reactions:
            await producer.send_and_wait(Topics.from_settings(settings).reactions, reaction.to_bytes(),
                                         key=reaction.subject.encode())
    finally:
        await producer.stop()


async def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def run_reactor(settings, until, *, group: str, what: str, settle_s: float = 1.0) -> ReactorStats:
    """Runs the reactor until ``until(stats)`` holds, then ``settle_s`` more (for any extra delivery to show)."""
    stats, stop = ReactorStats(), asyncio.Event()
    task = asyncio.create_task(consume(settings, stop, stats=stats, group=group))
    try:
        await wait_for(lambda: until(stats) or task.done(), what)
        await asyncio.sleep(settle_s)
    finally:
        stop.set()
        await task  # raises what the reactor raised
    return stats


def routes_file(tmp_path, text: str):
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_each_reaction_reaches_each_handler_once_also_after_a_restart_that_rereads_the_topic(
        settings_factory, free_ports, webhook_receiver, reaction_factory, tmp_path):
    routes = routes_file(tmp_path, f"""\
        handlers:
          hook:
            type: webhook
            url: {webhook_receiver.url}/hook
            secret: {SECRET}
          chat:
            type: apprise
            url: {webhook_receiver.url.replace("http://", "json://")}/chat
            body: "{{subject}} reached {{value:.0f}}"
          audit:
            type: log
        routes:
          page_views_threshold: [hook, chat]
          "*": [audit]
        """)
    settings = settings_factory(reactor_routes_file=routes, reactor_port=free_ports())
    first = [reaction_factory(n) for n in range(5)]
    later = [reaction_factory(n) for n in range(5, 7)]

    async def scenario():
        await produce(settings, first)
        one = await run_reactor(settings, lambda s: s.delivered["hook"] == 5 and s.delivered["chat"] == 5,
                                group="first", what="the first deliveries")
        # A new consumer group reads clickstream.reactions from the beginning, as after an offset reset.
        await produce(settings, later)
        two = await run_reactor(settings, lambda s: s.received == 7 and s.delivered["hook"] == 2,
                                group="second", what="the re-read")
        return one, two

    one, two = asyncio.run(scenario())
    assert one.as_dict()["delivered"] == {"hook": 5, "chat": 5, "audit": 5}
    assert two.as_dict()["delivered"] == {"hook": 2, "chat": 2, "audit": 2}
    assert two.skipped == 15 and one.dead_letters == two.dead_letters == 0

    hook = [r for r in webhook_receiver.requests if r[0] == "/hook"]
    ids = sorted(json.loads(body)["reaction_id"] for _, _, body in hook)
    assert ids == sorted(r.reaction_id for r in first + later)  # each exactly once
    for _, headers, body in hook:
        assert verify(SECRET, body, headers["X-Clickstream-Signature"])
        assert headers["Idempotency-Key"] == json.loads(body)["reaction_id"]
    chat = sorted(json.loads(body)["message"] for body in webhook_receiver.bodies("/chat"))
    assert chat == sorted(f"{r.subject} reached {r.value:.0f}" for r in first + later)


def test_a_failing_webhook_ends_in_a_dead_letter_that_replay_delivers(
        settings_factory, free_ports, webhook_receiver, reaction_factory, tmp_path, read_topic):
    routes = routes_file(tmp_path, f"""\
        handlers:
          hook:
            type: webhook
            url: {webhook_receiver.url}/hook
            secret: {SECRET}
            retry: {{max_attempts: 3, base_delay_s: 0.01, max_delay_s: 0.05}}
        routes:
          "*": [hook]
        """)
    settings = settings_factory(reactor_routes_file=routes, reactor_port=free_ports())
    reaction = reaction_factory(9)
    topics = Topics.from_settings(settings)
    webhook_receiver.status = 503

    async def scenario():
        await produce(settings, [reaction])
        return await run_reactor(settings, lambda s: s.dead_letters == 1, group="g", what="the dead letter")

    stats = asyncio.run(scenario())
    assert stats.as_dict() == {"received": 1, "undecodable": 0, "skipped": 0, "in_doubt": 0, "retries": 2,
                               "dead_letters": 1, "delivered": {}}
    assert len(webhook_receiver.requests) == 3
    [record] = read_topic(settings.bootstrap_servers, topics.dead_letters, expected=1)
    letter = DeadLetter.from_bytes(record.value)
    assert (letter.handler, letter.reaction, letter.attempts) == ("hook", reaction, 3)
    assert "503" in letter.last_error

    webhook_receiver.status = 204
    runner = CliRunner()
    env = settings.as_env()
    result = runner.invoke(cli, ["reactions", "replay", "--handler", "hook", "--since", "2026-01-01"], env=env)
    assert result.exit_code == 0, result.output
    assert "1 dead letters match" in result.output and "delivered 1, failed again 0" in result.output
    assert len(webhook_receiver.requests) == 4
    _, headers, body = webhook_receiver.requests[-1]
    assert verify(SECRET, body, headers["X-Clickstream-Signature"])
    assert json.loads(body)["reaction_id"] == reaction.reaction_id

    again = runner.invoke(cli, ["reactions", "replay"], env=env)
    assert again.exit_code == 0, again.output
    assert "delivered 0, failed again 0" in again.output and "already delivered 1" in again.output
    assert len(webhook_receiver.requests) == 4

    # Each delivery is recorded as started before its first attempt, then with its outcome.
    outcomes = [DeliveryRecord.from_bytes(r.value).outcome
                for r in read_topic(settings.bootstrap_servers, topics.reactor_deliveries, expected=4)]
    assert outcomes == ["started", "dead_lettered", "started", "delivered"]


def test_a_broken_routes_file_stops_the_reactor_with_its_line(settings_factory, tmp_path):
    routes = routes_file(tmp_path, """\
        handlers:
          hook: {type: webhook, url: http://127.0.0.1:9/x}
        routes:
          "*": [hook, hok]
        """)
    settings = settings_factory(reactor_routes_file=routes)
    result = CliRunner().invoke(cli, ["reactor"], env=settings.as_env())
    assert result.exit_code == 1
    assert f"{routes}:4: routes.*: unknown handler 'hok'" in result.output
