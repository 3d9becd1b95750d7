"""Handlers built from the routes: webhook, apprise, log and your own Python code.

A handler is an async callable taking a reaction; it returns when the reaction was
delivered and raises when not (``DeliveryFailed(..., retriable=False)`` to stop retrying).

Custom handlers are ``async def handler(reaction: Reaction, config: dict) -> None``, found
by name in the ``clickstream.reactors`` entry-point group (``[project.entry-points."clickstream.reactors"]``
of your package's pyproject.toml) or, with ``callable: module:function``, imported from the
reactor's Python path.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from clickstream.reactions import Reaction
from reactors.notify import AppriseHandler
from reactors.retry import RetryPolicy
from reactors.routes import AppriseSpec, LogSpec, PythonSpec, Routes, WebhookSpec
from reactors.webhook import WebhookHandler

ENTRY_POINT_GROUP = "clickstream.reactors"

Deliver = Callable[[Reaction], Awaitable[None]]


@dataclass(frozen=True)
class Handler:
    name: str
    deliver: Deliver
    retry: RetryPolicy


class LogHandler:
    def __init__(self, logger: logging.Logger, level: str):
        self.logger, self.level = logger, logging.getLevelName(level)

    async def __call__(self, reaction: Reaction) -> None:
        self.logger.log(self.level, "reaction %s [%s] %s", reaction.reaction_id, reaction.rule, reaction.message)


class PythonHandler:
    """Calls ``function(reaction, config)``, awaiting the result when it is awaitable."""

    def __init__(self, function: Callable[..., Any], config: dict[str, Any]):
        self.function, self.config = function, config

    async def __call__(self, reaction: Reaction) -> None:
        result = self.function(reaction, dict(self.config))
        if inspect.isawaitable(result):
            await result


def load_entry_point(name: str, entry_points=importlib.metadata.entry_points) -> Callable[..., Any]:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise LookupError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP!r} (is its package installed?)")
    return found[0].load()


def load_callable(target: str) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def build_handlers(routes: Routes, *, http: httpx.AsyncClient, logger: logging.Logger,
                   entry_points=importlib.metadata.entry_points) -> dict[str, Handler]:
    """Every handler of ``routes``, ready to call; a handler that cannot be built raises
    :class:`~reactors.errors.RoutesFileError` pointing at its definition (at start-up, not at the first reaction)."""
    handlers = {}
    for name, spec in routes.handlers.items():
        try:
            handlers[name] = Handler(name, _build(spec, http, logger, entry_points), spec.retry.policy())
        except Exception as exc:  # import errors of custom code, apprise URLs it does not know
            raise routes.error(name, f"{type(exc).__name__}: {exc}") from None
    return handlers


def _build(spec, http, logger, entry_points) -> Deliver:
    if isinstance(spec, WebhookSpec):
        return WebhookHandler(http, spec.url, secret=spec.secret, timeout_s=spec.timeout_s, headers=spec.headers)
    if isinstance(spec, AppriseSpec):
        return AppriseHandler(spec.url, title=spec.title, body=spec.body)
    if isinstance(spec, LogSpec):
        return LogHandler(logger, spec.level)
    if isinstance(spec, PythonSpec):
        function = (load_entry_point(spec.entry_point, entry_points) if spec.entry_point
                    else load_callable(spec.callable))
        if not callable(function):
            raise TypeError(f"{spec.entry_point or spec.callable} is not callable")
        return PythonHandler(function, spec.config)
    raise TypeError(f"unknown handler spec {spec!r}")
