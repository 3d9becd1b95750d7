"""Sources and their write keys.

Every event is sent with a write key (as in Segment) that names its source. Sources
come from a YAML file (``CLICKSTREAM_SOURCES_FILE``)::

    sources:
      - name: web
        write_key: wk_live_3f9a...
        allowed_origins: ["https://shop.example", "https://www.shop.example"]
        rate_limit: {per_second: 200, burst: 400}
      - name: backend
        write_key: wk_live_77c1...

plus the demo source, whose key comes from ``CLICKSTREAM_DEMO_WRITE_KEY``; when that
is unset a key is generated once and kept in the state directory, so it stays the
same across restarts of the stack.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clickstream.settings import Settings


class SourcesFileError(ValueError):
    """The sources file cannot be used; the message names the file, the entry and the reason."""


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    per_second: float = Field(gt=0)
    burst: float | None = Field(None, gt=0)  # bucket size; defaults to one second's worth


class _SourceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    write_key: str = Field(min_length=8)
    allowed_origins: list[str] = Field(default_factory=lambda: ["*"])
    rate_limit: RateLimit | None = None


@dataclass(frozen=True)
class Source:
    name: str
    write_key: str
    allowed_origins: tuple[str, ...] = ("*",)
    rate_limit: RateLimit | None = None

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins


def demo_write_key(settings: Settings) -> str:
    if settings.demo_write_key:
        return settings.demo_write_key
    path = settings.data_dir / "demo_write_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "demo_" + secrets.token_urlsafe(18)
    path.write_text(key + "\n")
    return key


def parse_sources(text: str, origin: str = "sources file") -> list[Source]:
    """Sources from YAML text; errors name the entry and the field."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SourcesFileError(f"{origin}: not valid YAML: {exc}") from None
    entries = document.get("sources") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise SourcesFileError(f"{origin}: expected a top-level 'sources:' list")
    sources, keys = [], set()
    for i, raw in enumerate(entries):
        try:
            entry = _SourceEntry.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise SourcesFileError(f"{origin}: sources[{i}]: {problems}") from None
        if entry.write_key in keys:
            raise SourcesFileError(f"{origin}: sources[{i}] ({entry.name}): write key used twice")
        keys.add(entry.write_key)
        sources.append(Source(entry.name, entry.write_key, tuple(entry.allowed_origins), entry.rate_limit))
    return sources


@dataclass
class SourceRegistry:
    """Looks up the source of a write key."""

    sources: list[Source] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_key = {s.write_key: s for s in self.sources}

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceRegistry:
        sources = [Source(settings.demo_source, demo_write_key(settings))]
        if settings.sources_file is not None:
            path = Path(settings.sources_file)
            try:
                text = path.read_text()
            except OSError as exc:
                raise SourcesFileError(f"cannot read sources file {path}: {exc}") from None
            sources += [s for s in parse_sources(text, str(path)) if s.write_key != sources[0].write_key]
        return cls(sources)

    def lookup(self, write_key: str | None) -> Source | None:
        return self._by_key.get(write_key) if write_key else None

    def origin_allowed_anywhere(self, origin: str) -> bool:
        """Whether any source accepts this browser origin (used to answer CORS preflights)."""
        return any(s.allows_origin(origin) for s in self.sources)
