"""Third-party browser libraries, served from installed Python packages (never a CDN):
plotly.js from `plotly`, htmx from `django-js-lib-htmx` (a package that holds nothing but
the htmx release files, with no dependencies). Each is gzipped once, served under a URL
that carries its version, and cached by browsers for a year."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.metadata import version

from litestar import Request, Response, get


@dataclass(frozen=True)
class Bundle:
    package: str  # the import name that holds the file
    resource: str  # the file's path inside that package
    url: str  # where we serve it; the version in it makes "immutable" safe


PLOTLY = Bundle(
    "plotly", "package_data/plotly.min.js", f"/vendor/plotly-{version('plotly')}.min.js"
)
HTMX_VERSION = ".".join(version("django-js-lib-htmx").split(".")[:3])  # 2.0.3.1 packs htmx 2.0.3
HTMX = Bundle("js_lib_htmx", "static/htmx/htmx.min.js", f"/vendor/htmx-{HTMX_VERSION}.min.js")
PLOTLY_PATH = PLOTLY.url
HTMX_PATH = HTMX.url


@lru_cache(maxsize=4)
def read_bundle(bundle: Bundle) -> tuple[bytes, bytes]:
    """The file as shipped, and gzipped (mtime 0, so the bytes never change between runs)."""
    raw = resources.files(bundle.package).joinpath(bundle.resource).read_bytes()
    return raw, gzip.compress(raw, compresslevel=6, mtime=0)


def plotly_bundle() -> tuple[bytes, bytes]:
    return read_bundle(PLOTLY)


def _serve(request: Request, bundle: Bundle) -> Response[bytes]:
    raw, gzipped = read_bundle(bundle)
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
    body = raw
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = gzipped
    return Response(body, media_type="application/javascript; charset=utf-8", headers=headers)


@get(PLOTLY.url, include_in_schema=False)
async def plotly_js(request: Request) -> Response[bytes]:
    return _serve(request, PLOTLY)


@get(HTMX.url, include_in_schema=False)
async def htmx_js(request: Request) -> Response[bytes]:
    return _serve(request, HTMX)


VENDOR_ROUTES = [plotly_js, htmx_js]
