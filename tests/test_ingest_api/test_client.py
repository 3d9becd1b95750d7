import pytest

from ingest_api.client import anonymize_ip, client_ip, parse_networks, parse_user_agent

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    "peer,xff,expected",
    [
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # untrusted peer: its header is ignored
        ("10.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.1", "1.1.1.1, 198.51.100.7, 10.0.0.2", "198.51.100.7"),  # the rightmost untrusted hop
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all hops trusted: the farthest
        ("10.0.0.1", "garbage", "10.0.0.1"),
        ("fd00::1", "2001:db8::5", "2001:db8::5"),
        ("testclient", None, None),
    ],
)
def test_client_ip(peer, xff, expected):
    assert client_ip(peer, xff, PROXIES) == expected


@pytest.mark.parametrize(
    "ip,expected",
    [("203.0.113.77", "203.0.113.0"), ("2001:db8:1234:5678::1", "2001:db8:1234::"), ("nope", None), (None, None)],
)
def test_anonymize_ip(ip, expected):
    assert anonymize_ip(ip) == expected


@pytest.mark.parametrize(
    "ua,browser,os,device,bot",
    [
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/17.0 Mobile/15E148 Safari/604.1", "Mobile Safari", "iOS", "mobile", False),
        ("Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 "
         "Mobile/15E148 Safari/604.1", "Mobile Safari", "iOS", "tablet", False),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
         "Safari/537.36", "Chrome", "Windows", "desktop", False),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile "
         "Safari/537.36", "Chrome", "Android", "mobile", False),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", None, "bot", True),
        (None, None, None, "other", False),
    ],
)
def test_parse_user_agent(ua, browser, os, device, bot):
    parsed = parse_user_agent(ua)
    assert (parsed.browser, parsed.os, parsed.device_type, parsed.is_bot) == (browser, os, device, bot)


def test_the_server_leaves_forwarded_headers_to_the_app(monkeypatch):
    """uvicorn's own proxy-header handling would believe X-Forwarded-For from any loopback peer."""
    import ingest_api.main as main
    from clickstream.settings import Settings

    seen = {}
    monkeypatch.setattr(main.uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setattr(main, "configure_logging", lambda *a, **k: None)
    main.run(Settings(_env_file=None))
    assert seen["proxy_headers"] is False
