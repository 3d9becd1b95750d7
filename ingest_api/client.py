"""Who sent a request: client IP (behind trusted proxies only), anonymized; user agent -> browser, OS, device."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from crawlerdetect import CrawlerDetect
from ua_parser import parse as parse_ua

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: list[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


@lru_cache(maxsize=4096)
def _ip(text: str | None):
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None


def client_ip(peer: str | None, forwarded_for: str | None, trusted: list[IPNetwork]) -> str | None:
    """The client's address: the peer, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right (the hop nearest to
    us) and the first address that is not itself a trusted proxy is the client. A
    header from an untrusted peer is ignored: anyone can write one.
    """
    address = _ip(peer)
    if address is None:
        return None
    if not forwarded_for or not any(address in net for net in trusted):
        return str(address)
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        hop_ip = _ip(hop)
        if hop_ip is None:
            break  # a garbled header: keep the last address we could trust
        address = hop_ip
        if not any(hop_ip in net for net in trusted):
            break
    return str(address)


@lru_cache(maxsize=4096)
def anonymize_ip(ip: str | None) -> str | None:
    """Drop the host part: IPv4 to its /24, IPv6 to its /48. Cached: a visitor sends many events from one address."""
    address = _ip(ip)
    if address is None:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@dataclass(frozen=True)
class UserAgent:
    browser: str | None
    os: str | None
    device_type: str  # desktop, mobile, tablet, bot or other
    is_bot: bool


_crawlers = CrawlerDetect()
_TABLET_HINTS = ("ipad", "tablet", "kindle", "silk", "playbook")


@lru_cache(maxsize=4096)
def parse_user_agent(ua: str | None) -> UserAgent:
    """Browser and OS families, device type and a bot flag. Cached: real traffic repeats a few agents."""
    if not ua:
        return UserAgent(None, None, "other", False)
    result = parse_ua(ua)
    browser = result.user_agent.family if result.user_agent else None
    os_family = result.os.family if result.os else None
    is_bot = _crawlers.isCrawler(ua) or (result.device is not None and result.device.family == "Spider")
    return UserAgent(browser, os_family, _device_type(ua, os_family, is_bot), is_bot)


def _device_type(ua: str, os_family: str | None, is_bot: bool) -> str:
    lowered = ua.lower()
    if is_bot:
        return "bot"
    if any(h in lowered for h in _TABLET_HINTS) or (os_family == "Android" and "mobile" not in lowered):
        return "tablet"
    if "mobi" in lowered or os_family in ("iOS", "Android", "Windows Phone"):
        return "mobile"
    if os_family in ("Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora", "FreeBSD", "macOS"):
        return "desktop"
    return "other"
