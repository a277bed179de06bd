"""plotly.js, served from the installed `plotly` package (never a CDN): gzipped once, under a
URL that carries its version, cached by browsers for a year."""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources
from importlib.metadata import version

from litestar import Request, Response, get

PLOTLY_VERSION = version("plotly")
PLOTLY_PATH = f"/vendor/plotly-{PLOTLY_VERSION}.min.js"


@lru_cache(maxsize=1)
def plotly_bundle() -> tuple[bytes, bytes]:
    raw = resources.files("plotly").joinpath("package_data/plotly.min.js").read_bytes()
    return raw, gzip.compress(raw, compresslevel=6, mtime=0)


@get(PLOTLY_PATH, include_in_schema=False)
async def plotly_js(request: Request) -> Response[bytes]:
    raw, gzipped = plotly_bundle()
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
    body = raw
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = gzipped
    return Response(body, media_type="application/javascript; charset=utf-8", headers=headers)
