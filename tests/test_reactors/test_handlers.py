"""Building handlers from routes: custom Python handlers by entry point or module:function, and build errors."""

import asyncio
import importlib
import logging
import sys
import textwrap

import httpx
import pytest

from reactors.errors import RoutesFileError
from reactors.handlers import ENTRY_POINT_GROUP, build_handlers
from reactors.routes import parse_routes
from test_reactors.fixtures import reaction_factory  # noqa: F401  (pytest fixtures)

PLUGIN = '''
received = []

async def remember(reaction, config):
    received.append((reaction.reaction_id, config))

def not_async(reaction, config):
    received.append(("sync", reaction.reaction_id))
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package installed the way pip would: its module plus a dist-info declaring an entry point."""
    name = f"plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PLUGIN)
    dist = tmp_path / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nremember-{name} = {name}:remember\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield name
    sys.modules.pop(name, None)


def build(text):
    async def run():
        async with httpx.AsyncClient() as http:
            return build_handlers(parse_routes(textwrap.dedent(text), "routes.yaml"), http=http,
                                  logger=logging.getLogger("test"))

    return asyncio.run(run())


def test_entry_point_handler_gets_the_reaction_and_its_config(installed_plugin, reaction_factory):
    handlers = build(f"""\
        handlers:
          mine:
            type: python
            entry_point: remember-{installed_plugin}
            config: {{channel: growth, limit: 3}}
          direct:
            type: python
            callable: {installed_plugin}:not_async
        routes:
          "*": [mine, direct]
        """)
    reaction = reaction_factory()
    asyncio.run(handlers["mine"].deliver(reaction))
    asyncio.run(handlers["direct"].deliver(reaction))
    plugin = sys.modules[installed_plugin]
    assert plugin.received == [(reaction.reaction_id, {"channel": "growth", "limit": 3}),
                               ("sync", reaction.reaction_id)]


@pytest.mark.parametrize("handler, line, reason", [
    ("type: python\n    entry_point: no-such-plugin", 2, "no entry point 'no-such-plugin' in group 'clickstream.reactors'"),
    ("type: python\n    callable: no_such_module_xyz:f", 2, "ModuleNotFoundError"),
    ("type: python\n    callable: json:no_such_function", 2, "AttributeError"),
    ("type: apprise\n    url: nosuchservice://x", 2, "apprise does not understand"),
])
def test_a_handler_that_cannot_be_built_fails_at_start_up_with_its_line(handler, line, reason):
    with pytest.raises(RoutesFileError) as info:
        build(f"handlers:\n  h:\n    {handler}\nroutes: {{}}\n")
    assert info.value.line == line and reason in str(info.value)
    assert str(info.value).startswith(f"routes.yaml:{line}: handlers.h: ")
