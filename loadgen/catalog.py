"""What synthetic visitors are made of: devices and their user agents, crawlers, where visits come
from, the shop's catalog and the experiment. Plain data; the weights are shares of visits.

The user agents are real browsers' strings, chosen so the API's enrichment (ua-parser and
crawlerdetect) classifies each as the device it is listed under.
"""

from __future__ import annotations

from dataclasses import dataclass

HOST = "https://shop.example"

# device type -> (weight, user agents)
DEVICES: dict[str, tuple[float, tuple[str, ...]]] = {
    "desktop": (0.55, (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
    )),
    "mobile": (0.35, (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    )),
    "tablet": (0.10, (
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Safari/537.36",
    )),
}

CRAWLERS: tuple[str, ...] = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
)


@dataclass(frozen=True)
class Origin:
    """Where a visit comes from: a referrer and the UTM tags of the landing URL (None: direct)."""

    weight: float
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None


ORIGINS: tuple[Origin, ...] = (
    Origin(0.30),  # typed the address or a bookmark
    Origin(0.25, "https://www.google.com/"),
    Origin(0.08, "https://duckduckgo.com/"),
    Origin(0.10, "https://www.google.com/", "google", "cpc", "spring_sale"),
    Origin(0.09, "https://l.facebook.com/", "facebook", "social", "spring_sale"),
    Origin(0.08, None, "newsletter", "email", "weekly_digest"),
    Origin(0.05, "https://t.co/", "twitter", "social", "launch"),
    Origin(0.05, "https://news.ycombinator.com/"),
)

PRODUCTS: tuple[tuple[str, str, float], ...] = (  # id, name, price
    ("sku-1001", "Trail Running Shoes", 89.0),
    ("sku-1002", "Merino Wool Socks", 14.5),
    ("sku-1003", "Rain Shell Jacket", 129.0),
    ("sku-1004", "Insulated Bottle", 24.0),
    ("sku-1005", "Day Pack 20L", 59.0),
    ("sku-1006", "Headlamp", 32.0),
)

OTHER_PAGES: tuple[str, ...] = ("/about", "/blog", "/faq", "/shipping", "/contact")


@dataclass(frozen=True)
class Variant:
    variation_id: str
    variation_name: str
    # Multiplies the chance of each step after the product page (add to cart, checkout, pay).
    step_boost: float


EXPERIMENT_ID = "checkout-button"
EXPERIMENT_NAME = "Checkout button color"
VARIANTS: tuple[Variant, ...] = (
    Variant("0", "A", 1.0),
    Variant("1", "B", 1.15),
)

# Chance that a visit which reached a step goes on to the next one (for variant A).
CONTINUE = {
    "products": 0.75,   # home -> product list
    "product": 0.80,    # product list -> a product page
    "add": 0.35,        # product page -> Product Added
    "checkout": 0.65,   # cart -> checkout page
    "order": 0.60,      # checkout -> Order Completed
}
