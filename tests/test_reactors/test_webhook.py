"""The webhook and apprise handlers against a real HTTP receiver on loopback."""

import asyncio
import json

import httpx
import pytest

from reactors.errors import DeliveryFailed
from reactors.notify import AppriseHandler
from reactors.signature import verify
from reactors.webhook import WebhookHandler, check_status
from test_reactors.fixtures import reaction_factory, webhook_receiver  # noqa: F401  (pytest fixtures)


@pytest.mark.parametrize("status, retriable", [(500, True), (503, True), (429, True), (408, True),
                                               (400, False), (401, False), (404, False), (301, False)])
def test_which_answers_are_worth_retrying(status, retriable):
    with pytest.raises(DeliveryFailed) as info:
        check_status("http://h/x", status)
    assert info.value.retriable is retriable


def test_2xx_is_delivered():
    for status in (200, 201, 202, 204):
        check_status("http://h/x", status)


def post(handler, reaction):
    async def run():
        async with httpx.AsyncClient() as client:
            handler.client = client
            await handler(reaction)

    asyncio.run(run())


def test_posts_the_reaction_signed_with_its_idempotency_key(webhook_receiver, reaction_factory):
    reaction = reaction_factory(3)
    handler = WebhookHandler(None, webhook_receiver.url + "/hook", secret="s3cret", headers={"X-Team": "growth"})
    post(handler, reaction)
    [(path, headers, body)] = webhook_receiver.requests
    assert path == "/hook"
    assert json.loads(body)["reaction_id"] == reaction.reaction_id and json.loads(body)["value"] == 103
    assert headers["Idempotency-Key"] == reaction.reaction_id
    assert headers["Content-Type"] == "application/json" and headers["X-Team"] == "growth"
    assert verify("s3cret", body, headers["X-Clickstream-Signature"])


def test_no_secret_no_signature(webhook_receiver, reaction_factory):
    post(WebhookHandler(None, webhook_receiver.url), reaction_factory())
    [(_, headers, _)] = webhook_receiver.requests
    assert "X-Clickstream-Signature" not in headers


def test_a_failing_webhook_raises_a_retriable_error(webhook_receiver, reaction_factory):
    webhook_receiver.status = 503
    with pytest.raises(DeliveryFailed) as info:
        post(WebhookHandler(None, webhook_receiver.url), reaction_factory())
    assert info.value.retriable and "503" in str(info.value)


def test_an_unreachable_webhook_raises_a_retriable_error(reaction_factory, free_ports):
    with pytest.raises(DeliveryFailed) as info:
        post(WebhookHandler(None, f"http://127.0.0.1:{free_ports()}/x", timeout_s=1), reaction_factory())
    assert info.value.retriable and "ConnectError" in str(info.value)


def test_apprise_json_notification_reaches_the_receiver(webhook_receiver, reaction_factory):
    reaction = reaction_factory(1)
    url = webhook_receiver.url.replace("http://", "json://") + "/notify"
    handler = AppriseHandler(url, title="{rule} fired", body="{subject}: {value:.0f} views")
    asyncio.run(handler(reaction))
    [(path, _, body)] = webhook_receiver.requests
    assert path == "/notify"
    payload = json.loads(body)
    assert payload["title"] == "page_views_threshold fired"
    assert payload["message"] == "demo:/pricing: 101 views"


def test_a_failing_apprise_channel_raises(webhook_receiver, reaction_factory):
    webhook_receiver.status = 500
    handler = AppriseHandler(webhook_receiver.url.replace("http://", "json://"), title="t", body="{message}")
    with pytest.raises(DeliveryFailed) as info:
        asyncio.run(handler(reaction_factory()))
    assert info.value.retriable and "JSON notification failed" in str(info.value)


def test_apprise_rejects_a_url_it_does_not_know():
    with pytest.raises(ValueError, match="apprise does not understand"):
        AppriseHandler("nosuchservice://x", title="t", body="b")
