"""The server's absolute URL, as written into install snippets and share links.

Any client can send any Host header, and a snippet copied from a page rendered for
`Host: evil.example` would send a site's visitors to that host. So the URL is
GATRIX_PUBLIC_URL when set; otherwise the request's Host only when its name is in
GATRIX_ALLOWED_HOSTS (by default the loopback names and GATRIX_HOST); otherwise the address
the server listens on.
"""

from __future__ import annotations

import re

from gatrix.settings import Settings

# a bracketed IPv6 literal or a plain name, then an optional port; nothing else may follow
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?")


def host_name(host_header: str) -> str | None:
    """The lower-cased name in a Host header; None when it is not a well-formed one."""
    match = _HOST.fullmatch(host_header.strip())
    return match.group(1).strip("[]").lower() if match else None


def public_base_url(settings: Settings, scheme: str, host_header: str) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    name = host_name(host_header)
    if name is not None and name in settings.host_names:
        return f"{scheme}://{host_header.strip()}{settings.root_path}"
    return settings.base_url() + settings.root_path
