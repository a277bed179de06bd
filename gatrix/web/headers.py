"""Security headers on every response Litestar sends: pages, fragments, errors, assets, JSON.

`/track` never reaches Litestar (FrontDoor answers it with its own CORS replies), so it is
untouched. The policy fits the pages as they are: our scripts and styles come from our own
files, and figures travel as JSON in `<script type="application/json">` (data, not code).
plotly.js adds its rules by appending an empty `<style>` element and filling it through the
CSSOM (which `style-src` does not govern); a strict `style-src` refuses even the empty
element, and Plotly's hover layers then cover the page. It also appends one fixed stylesheet
(its map library's) at load. So the policy admits exactly those elements by the hashes of
their texts, read from the served bundle so that a plotly upgrade cannot make them stale.

- Admin and dashboard pages may not be framed by anyone (clickjacking).
- Share pages may be framed by the origins in GATRIX_SHARE_FRAME_ANCESTORS, through CSP
  `frame-ancestors` alone: X-Frame-Options cannot name several origins, and browsers that know
  CSP ignore it anyway when `frame-ancestors` is present.
- The API reference under `/schema` loads its viewer from elsewhere, so it gets no content
  policy beyond `frame-ancestors`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

from gatrix.settings import Settings
from gatrix.web.vendor import plotly_bundle

# a string literal assigned to a new <style> element's text; literals with escapes are
# skipped, since their hash would not be that of the text the browser sees
_STYLE_LITERAL = re.compile(
    r"""createElement\("style"\).{0,200}?\.textContent=(['"])((?:(?!\1)[^\\])*)\1"""
)

_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    # share links carry their secret in the path: never hand it to another site
    (b"referrer-policy", b"same-origin"),
]

Hook = Callable[[Any, Any], Awaitable[None]]


def _style_hashes() -> list[str]:
    bundle = plotly_bundle()[0].decode("utf-8", "replace")
    texts = {"", *(match.group(2) for match in _STYLE_LITERAL.finditer(bundle))}
    digests = (hashlib.sha256(text.encode()).digest() for text in sorted(texts))
    return [f"'sha256-{base64.b64encode(digest).decode()}'" for digest in digests]


def content_policy() -> str:
    return (
        "default-src 'self'; script-src 'self'; "
        f"style-src 'self' {' '.join(_style_hashes())}; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'"
    )


def _pairs(csp: str, deny_framing: bool) -> list[tuple[bytes, bytes]]:
    pairs = [(b"content-security-policy", csp.encode()), *_COMMON]
    if deny_framing:
        pairs.append((b"x-frame-options", b"DENY"))
    return pairs


def security_headers(settings: Settings) -> Hook:
    """A Litestar `before_send` hook adding the headers a response does not set itself."""
    content = content_policy()
    default = _pairs(f"{content}; frame-ancestors 'none'", deny_framing=True)
    docs = _pairs("frame-ancestors 'none'; object-src 'none'; base-uri 'none'", deny_framing=True)
    share = default
    if settings.share_frame_ancestors:
        ancestors = " ".join(settings.share_frame_ancestors)
        share = _pairs(f"{content}; frame-ancestors {ancestors}", deny_framing=False)
    # A dashboard URL answers a whole page or, asked by htmx, a fragment of it: without these
    # the back button could show a cached bare fragment, and analytics pages would sit in the
    # browser's disk cache.
    views = [(b"cache-control", b"no-store"), (b"vary", b"HX-Request")]
    share_view, default_view = [*share, *views], [*default, *views]

    async def add_headers(message: Any, scope: Any) -> None:
        if message["type"] != "http.response.start":
            return
        path: str = scope.get("path", "")
        if path.startswith("/share/"):
            wanted = share_view
        elif path == "/schema" or path.startswith("/schema/"):
            wanted = docs
        elif path.startswith("/dashboard/"):
            wanted = default_view
        else:
            wanted = default
        headers = list(message.get("headers") or [])
        present = {name.lower() for name, _ in headers}
        headers.extend(pair for pair in wanted if pair[0] not in present)
        message["headers"] = headers

    return add_headers
