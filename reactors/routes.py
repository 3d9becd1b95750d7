"""The routes file: which handlers act on the reactions of which rule. Parsing only, no I/O.

::

    handlers:
      ops-hook:
        type: webhook
        url: https://hooks.example/clickstream
        secret: change-me
      slack:
        type: apprise
        url: slack://T000/B000/XXXX
      audit:
        type: log
    routes:
      page_views_threshold: [ops-hook, slack]
      "*": [audit]

A reaction goes to the handlers of its rule and to those of ``*``, each handler once.
Handler names are what the delivery ledger and the dead letters remember, so renaming a
handler makes it a new one (it will receive reactions again when the topic is replayed).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clickstream.reactions import Reaction
from reactors.errors import RoutesFileError
from reactors.retry import RetryPolicy
from reactors.yaml_lines import YamlProblem, line_of, load_with_lines

ANY_RULE = "*"
_HANDLER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REACTION_FIELDS = set(Reaction.model_fields)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySpec(_Spec):
    max_attempts: int = Field(5, ge=1, le=1000)
    max_elapsed_s: float = Field(300.0, gt=0)
    base_delay_s: float = Field(0.5, gt=0)
    max_delay_s: float = Field(30.0, gt=0)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.max_elapsed_s, self.base_delay_s, self.max_delay_s)


class _HandlerSpec(_Spec):
    retry: RetrySpec = RetrySpec()


class WebhookSpec(_HandlerSpec):
    """JSON POST of the reaction, signed with ``secret`` (HMAC-SHA256 of the body) when one is set."""

    type: Literal["webhook"]
    url: str
    secret: str | None = None
    timeout_s: float = Field(5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url


class AppriseSpec(_HandlerSpec):
    """A notification through apprise: ``url`` is an apprise URL (slack://, mailto://, tgram://, json://...).

    ``title`` and ``body`` are format strings over the reaction's fields, e.g. ``"{subject}: {value}"``.
    """

    type: Literal["apprise"]
    url: str = Field(min_length=3)
    title: str = "clickstream: {rule}"
    body: str = "{message}"

    @field_validator("title", "body")
    @classmethod
    def _known_fields(cls, template: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid format string: {exc}") from None
        unknown = {n.split(".")[0].split("[")[0] for n in names} - _REACTION_FIELDS
        if unknown or "" in names:
            raise ValueError(f"unknown reaction field(s) {sorted(unknown or {''})}; "
                             f"known: {', '.join(sorted(_REACTION_FIELDS))}")
        return template


class LogSpec(_HandlerSpec):
    """One log line per reaction (the reactor's log)."""

    type: Literal["log"]
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class PythonSpec(_HandlerSpec):
    """Your own ``async def handler(reaction, config)``: an entry point of the ``clickstream.reactors``
    group (installed with your package), or a ``module:function`` on the reactor's Python path."""

    type: Literal["python"]
    entry_point: str | None = None
    callable: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_target(self) -> PythonSpec:
        if (self.entry_point is None) == (self.callable is None):
            raise ValueError("give exactly one of 'entry_point' (a name in the clickstream.reactors group) "
                             "or 'callable' (module:function)")
        if self.callable is not None and not re.fullmatch(r"[\w.]+:[\w.]+", self.callable):
            raise ValueError(f"callable {self.callable!r} is not of the form module:function")
        return self


HandlerSpec = Annotated[Union[WebhookSpec, AppriseSpec, LogSpec, PythonSpec], Field(discriminator="type")]


class _Document(_Spec):
    handlers: dict[str, HandlerSpec]
    routes: dict[str, list[str]]


@dataclass(frozen=True)
class Routes:
    """Named handler specs and the handler names of each rule (``*`` = every rule)."""

    handlers: dict[str, Any]
    routes: dict[str, tuple[str, ...]]
    origin: str = "default routes"
    lines: dict[str, int] = field(default_factory=dict)  # where each handler is defined, for later errors

    def handlers_for(self, rule: str) -> list[str]:
        """The handlers of ``rule``, then those of ``*``, each once, in file order."""
        names = list(self.routes.get(rule, ())) + list(self.routes.get(ANY_RULE, ()))
        return list(dict.fromkeys(names))

    def error(self, handler: str, reason: str) -> RoutesFileError:
        """An error about a handler, pointing at its definition."""
        return RoutesFileError(f"handlers.{handler}: {reason}", origin=self.origin, line=self.lines.get(handler))


def parse_routes(text: str, origin: str = "routes file") -> Routes:
    """Routes from YAML text; an error names the file, the line and the reason."""
    try:
        document, lines = load_with_lines(text)
    except YamlProblem as exc:
        raise RoutesFileError(exc.reason, origin=origin, line=exc.line) from None
    if not isinstance(document, dict):
        raise RoutesFileError("expected a mapping with 'handlers:' and 'routes:'", origin=origin, line=1)
    try:
        parsed = _Document.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RoutesFileError(f"{where}: {first['msg']}", origin=origin, line=line_of(lines, first["loc"])) from None
    for name in parsed.handlers:
        if not _HANDLER_NAME.match(name):
            raise RoutesFileError(f"handler name {name!r}: use letters, digits, '_', '.', '-'",
                                  origin=origin, line=lines.get(("handlers", name)))
    for rule, names in parsed.routes.items():
        for index, name in enumerate(names):
            if name not in parsed.handlers:
                raise RoutesFileError(
                    f"routes.{rule}: unknown handler {name!r} (defined: {', '.join(parsed.handlers) or 'none'})",
                    origin=origin, line=lines.get(("routes", rule, str(index))))
    return Routes(
        handlers=dict(parsed.handlers),
        routes={rule: tuple(names) for rule, names in parsed.routes.items()},
        origin=origin,
        lines={name: lines[("handlers", name)] for name in parsed.handlers},
    )


def default_routes(webhook_url: str | None, webhook_secret: str | None, timeout_s: float) -> Routes:
    """Without a routes file: log every reaction, and post it to ``webhook_url`` if one is set."""
    handlers: dict[str, Any] = {"log": LogSpec(type="log")}
    if webhook_url:
        handlers["webhook"] = WebhookSpec(type="webhook", url=webhook_url, secret=webhook_secret, timeout_s=timeout_s)
    return Routes(handlers=handlers, routes={ANY_RULE: tuple(handlers)})
