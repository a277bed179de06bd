"""Umami's data export: the CSV of its `website_event` table, one row per page view or event.

Columns read (others are ignored): `session_id` (Umami's visitor: our device id),
`created_at` (UTC), `event_type` (1 page view, otherwise a custom event named `event_name`),
`hostname` + `url_path` + `url_query` (the page), `referrer_domain` + `referrer_path` +
`referrer_query` (the referrer), `page_title`, `browser`, `os`, `device`, `screen`,
`language`, `country`, `subdivision1` or `region`, `city`, `utm_*`, and `ip` when present.
Umami stores browser and OS names, not user agents: they are mapped to the names our user
agent parser gives, so breakdowns merge with live data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gatrix.ingest.payloads import has_control
from gatrix.ingest.pipeline import parse_client_time
from gatrix.portability.enrich import Imported
from gatrix.portability.formats import Converted, csv_columns, csv_records

# Umami's browser ids (from its browser detection) → our parser's family names
BROWSERS = {
    "chrome": "Chrome",
    "crios": "Chrome Mobile iOS",
    "chromium-webview": "Chrome Mobile WebView",
    "firefox": "Firefox",
    "fxios": "Firefox iOS",
    "safari": "Safari",
    "ios": "Mobile Safari",
    "ios-webview": "Mobile Safari UI/WKWebView",
    "edge-chromium": "Edge",
    "edge": "Edge",
    "edge-ios": "Edge Mobile",
    "opera": "Opera",
    "samsung": "Samsung Internet",
    "yandexbrowser": "Yandex Browser",
    "android": "Android",
    "facebook": "Facebook",
    "instagram": "Instagram",
    "silk": "Amazon Silk",
    "miui": "MiuiBrowser",
}
# Umami's OS names → (our family, version)
OSES = {
    "Windows 10": ("Windows", "10"),
    "Windows 7": ("Windows", "7"),
    "Windows 8.1": ("Windows", "8.1"),
    "Mac OS": ("Mac OS X", ""),
    "iOS": ("iOS", ""),
    "Android OS": ("Android", ""),
    "Linux": ("Linux", ""),
    "Chrome OS": ("Chrome OS", ""),
}
DEVICES = {"laptop": "desktop", "desktop": "desktop", "mobile": "mobile", "tablet": "tablet"}
_UTMS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def _url(host: str, path: str, query: str) -> str:
    if not host and not path:
        return ""
    url = f"https://{host}{path or '/'}" if host else path
    return f"{url}?{query.lstrip('?')}" if query else url


class UmamiFormat:
    name = "umami"
    csv = True
    sessions = True

    def records(self, data: bytes, header: bytes) -> Iterator[Any]:
        return csv_records(data, header)

    def key_records(self, data: bytes, header: bytes) -> Iterator[Any]:
        return csv_columns(data, header, ("session_id", "created_at"))

    def key(self, record: list[str]) -> tuple[str, int] | None:
        visitor, created_at = record
        ts = parse_client_time(created_at)
        visitor = visitor[:200]  # as the device id is cut
        return (visitor, ts) if ts is not None and visitor and not has_control(visitor) else None

    def convert(self, record: dict[str, str]) -> Converted:
        ts = parse_client_time(record.get("created_at"))
        visitor = record.get("session_id", "")
        if ts is None or not visitor or has_control(visitor[:200]):
            return "invalid"  # a device id live ingestion refuses (control characters) too
        get = record.get
        event_type = get("event_type", "1")
        name = get("event_name", "") if event_type != "1" and get("event_name") else "pageview"
        os_name, os_version = OSES.get(get("os", ""), (get("os", ""), ""))
        browser = get("browser", "")
        given = {
            "browser": BROWSERS.get(browser, browser.capitalize()),
            "os": os_name,
            "os_version": os_version,
            "device": DEVICES.get(get("device", ""), get("device", "")),
            "country": get("country", ""),
            "region": get("subdivision1", "") or get("region", ""),
            "city": get("city", ""),
        }
        for key in _UTMS:
            if get(key):
                given[key] = get(key, "")
        ref_host = get("referrer_domain", "")
        return Imported(
            name=name[:200],
            ts_ms=ts,
            device_id=visitor[:200],
            url=_url(get("hostname", ""), get("url_path", ""), get("url_query", "")),
            referrer=_url(ref_host, get("referrer_path", ""), get("referrer_query", ""))
            if ref_host
            else "",
            title=get("page_title", ""),
            ip=get("ip", ""),
            screen=get("screen", ""),
            language=get("language", ""),
            given=given,
        )
