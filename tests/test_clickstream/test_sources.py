import pytest

from clickstream.settings import Settings
from clickstream.sources import SourceRegistry, SourcesFileError, parse_sources

GOOD = """
sources:
  - name: web
    write_key: wk_web_12345678
    allowed_origins: ["https://shop.example"]
    rate_limit: {per_second: 50, burst: 100}
  - name: backend
    write_key: wk_backend_1234
"""


def test_parse_sources():
    web, backend = parse_sources(GOOD)
    assert web.allows_origin("https://shop.example") and not web.allows_origin("https://evil.example")
    assert web.rate_limit.per_second == 50 and web.rate_limit.burst == 100
    assert backend.allows_origin("https://anything.example") and backend.rate_limit is None


@pytest.mark.parametrize(
    "text,message",
    [
        ("sources: [", "not valid YAML"),
        ("other: 1", "top-level 'sources:'"),
        ("sources:\n  - name: a\n    write_key: short", r"sources\[0\]: write_key"),
        ("sources:\n  - name: a\n    write_key: wk_12345678\n    colour: red", r"sources\[0\]: colour"),
        ("sources:\n  - {name: a, write_key: wk_12345678}\n  - {name: b, write_key: wk_12345678}", "used twice"),
        ("sources:\n  - {name: a, write_key: wk_12345678, rate_limit: {per_second: 0}}", "per_second"),
    ],
)
def test_bad_sources_files_say_where_and_why(text, message):
    with pytest.raises(SourcesFileError, match=message):
        parse_sources(text, "sources.yml")


def test_registry_has_the_demo_source_and_the_file(tmp_path):
    path = tmp_path / "sources.yml"
    path.write_text(GOOD)
    registry = SourceRegistry.from_settings(Settings(_env_file=None, demo_write_key="wk_demo_1", sources_file=path,
                                                     state_dir=tmp_path))
    assert registry.lookup("wk_demo_1").name == "demo"
    assert registry.lookup("wk_web_12345678").name == "web"
    assert registry.lookup("nope") is None and registry.lookup(None) is None


def test_generated_demo_key_is_stable(tmp_path):
    settings = Settings(_env_file=None, state_dir=tmp_path)
    first = SourceRegistry.from_settings(settings).sources[0].write_key
    assert first.startswith("demo_") and SourceRegistry.from_settings(settings).sources[0].write_key == first
