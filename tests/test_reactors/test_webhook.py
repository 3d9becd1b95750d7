import asyncio
import itertools
import json
from datetime import datetime, timezone

import httpx
from aiohttp import web

from clickstream.reactions import Reaction, reaction_id
from reactors.webhook import backoff_delays, deliver_until_accepted

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def reaction() -> Reaction:
    return Reaction(
        reaction_id=reaction_id("r", "demo:/", T0), rule="r", kind="threshold", subject="demo:/",
        window_start=T0, window_end=T0, value=5, threshold=5, message="m", created_at=T0,
    )


def test_backoff_grows_and_caps():
    assert list(itertools.islice(backoff_delays(0.5, 4), 6)) == [0.5, 1, 2, 4, 4, 4]


def test_retries_until_the_webhook_accepts():
    """A real HTTP server that fails twice, then accepts."""
    received = []

    async def scenario():
        async def hook(request):
            received.append((request.headers.get("Idempotency-Key"), json.loads(await request.read())))
            return web.Response(status=500 if len(received) <= 2 else 204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        sleeps = []

        async def no_wait(s):
            sleeps.append(s)

        try:
            async with httpx.AsyncClient() as client:
                failures = await deliver_until_accepted(client, f"http://127.0.0.1:{port}/hook", reaction(), sleep=no_wait)
        finally:
            await runner.cleanup()
        return failures, sleeps

    failures, sleeps = asyncio.run(scenario())
    assert failures == 2 and sleeps == [0.5, 1.0]
    assert len(received) == 3
    assert {key for key, _ in received} == {reaction().reaction_id}
    assert received[-1][1]["subject"] == "demo:/"
