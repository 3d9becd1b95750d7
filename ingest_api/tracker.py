"""``GET /tracker.js``: the browser tracker, served by the API itself so that a site needs one script tag.

The script (``static/tracker.js``) is hand-written and commented; it is read once at start-up and
served without its comment lines and indentation, which keeps it well under 5 KB with no build step.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Request, Response

from clickstream.settings import Settings

SCRIPT_PATH = Path(__file__).parent / "static" / "tracker.js"
# Sites embed the script from another origin; an hour of caching spares every page view a request
# while letting a new version reach visitors the same day (the ETag makes revalidation cheap).
CACHE_CONTROL = "public, max-age=3600, stale-while-revalidate=86400"


def strip_script(source: str) -> str:
    """The script without comment-only lines, indentation and blank lines.

    Safe because lines stay lines (automatic semicolon insertion sees the same breaks) and the
    script has no multi-line strings; comments at the end of a code line are kept.
    """
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("//")) + "\n"


def tracker_router(settings: Settings) -> APIRouter:
    """The route serving the tracker; the script is the same for every source (the tag carries the key)."""
    del settings  # taken for symmetry with the app's other parts: nothing in the script depends on it
    script = strip_script(SCRIPT_PATH.read_text(encoding="utf-8")).encode()
    etag = '"' + hashlib.sha256(script).hexdigest()[:20] + '"'
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "ETag": etag,
        # Pages that isolate themselves (Cross-Origin-Embedder-Policy) load only resources that opt in.
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    router = APIRouter()

    @router.get("/tracker.js", include_in_schema=False)
    async def tracker_js(request: Request) -> Response:
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(script, media_type="application/javascript; charset=utf-8", headers=headers)

    return router
