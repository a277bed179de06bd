"""`GET /op1.js` (alias `/tracker.js`): our tracker, minified and gzipped once at start-up.

The URL is stable so snippets never change: it is cached for an hour and revalidated with an
ETag; `?v=<etag>` URLs are immutable for a year.
"""

from __future__ import annotations

import gzip
import hashlib
from functools import lru_cache

from calmjs.parse import es5
from calmjs.parse.unparsers.es5 import minify_print
from litestar import Request, Response, get

from gatrix.resources import tracker_source_path

SOURCE = tracker_source_path()


@lru_cache(maxsize=1)
def bundle() -> tuple[bytes, bytes, str]:
    """(minified, gzipped, etag) of the tracker source."""
    # local names shortened: OpenPanel's script is ~2.3 KB gzipped, ours must stay under 1.5
    program = es5(SOURCE.read_text())
    minified = minify_print(program, obfuscate=True, obfuscate_globals=False).encode() + b"\n"
    etag = hashlib.sha256(minified).hexdigest()[:16]
    return minified, gzip.compress(minified, compresslevel=9, mtime=0), etag


def _serve(request: Request) -> Response[bytes]:
    minified, gzipped, etag = bundle()
    versioned = request.query_params.get("v") == etag
    headers = {
        "ETag": f'"{etag}"',
        "Cache-Control": "public, max-age=31536000, immutable"
        if versioned
        else "public, max-age=3600",
        "Vary": "Accept-Encoding",
        "Access-Control-Allow-Origin": "*",
    }
    if request.headers.get("if-none-match", "").strip('W/"') == etag:
        return Response(b"", status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = gzipped
    else:
        body = minified
    return Response(body, media_type="application/javascript; charset=utf-8", headers=headers)


@get(["/op1.js", "/tracker.js"], include_in_schema=False)
async def tracker_script(request: Request) -> Response[bytes]:
    return _serve(request)
