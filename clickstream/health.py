"""A tiny HTTP health endpoint for the services that have no web server of their own."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


async def start_health_server(host: str, port: int, status: Callable[[], dict]) -> web.AppRunner:
    """Serve ``GET /health`` -> ``status()`` as JSON until the returned runner is cleaned up."""

    async def health(_request: web.Request) -> web.Response:
        return web.json_response(status())

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
