"""Next-page recommendations from page-to-next-page counts: the most likely next pages of a page."""

from __future__ import annotations


def recommend(next_pages: dict[str, int], limit: int) -> list[dict]:
    """The ``limit`` most frequent next pages with their share of the page's transitions
    (ties by path, so answers are stable)."""
    total = sum(next_pages.values())
    ranked = sorted(next_pages.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return [{"path": path, "count": n, "probability": round(n / total, 4)} for path, n in ranked]
