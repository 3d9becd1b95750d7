"""Small text formats shared by the pages."""

from __future__ import annotations


def age(seconds: float | None) -> str:
    """``42 s ago``, ``5 min ago``, ``3 h ago``, ``6 d ago``; ``never`` for no value."""
    if seconds is None or seconds != seconds:  # None or NaN: nothing there yet
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.0f} {unit} ago"
    return f"{seconds:,.0f} s ago"
