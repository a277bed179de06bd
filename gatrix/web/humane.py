"""Numbers and values as people read them: "3m 44s", "🇩🇪 Germany", "Direct / None",
"12.3k". Pure functions; the templates use them as Jinja filters of the same names
(`FILTERS`, registered by `gatrix.app.template_environment`), the charts for their labels."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pycountry

MISSING = "—"
UNKNOWN_COUNTRY = "Unknown"
DIRECT = "Direct / None"
NOT_SET = "(not set)"
# dimensions whose empty value means the visit came direct (an empty UTM tag only means
# the link had none: "(not set)")
SOURCE_DIMENSIONS = frozenset({"referrers", "referrer_types", "channels"})
COUNTRY_DIMENSIONS = frozenset({"countries", "country"})
CHANNEL_DIMENSIONS = frozenset({"referrer_types", "channels"})
# the channel codes ingestion stores (README "Referrer"), as a dashboard names them
CHANNELS = {
    "search": "Search",
    "social": "Social",
    "video": "Video",
    "email": "Email",
    "ai": "AI assistants",
    "link": "Links",
    "paid": "Paid",
}
# codes a geo database gives that ISO 3166 (pycountry) does not list
EXTRA_COUNTRIES = {"XK": "Kosovo"}
_REGIONAL_A = 0x1F1E6  # REGIONAL INDICATOR SYMBOL LETTER A


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def duration(seconds: float | None) -> str:
    """`45s`, `3m 04s`, `1h 02m`; `—` when there is no duration (no sessions)."""
    value = _finite(seconds)
    if value is None:
        return MISSING
    total = max(0, round(value))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def country_name(code: str | None) -> str:
    """The short English name of an ISO 3166 alpha-2 code ("South Korea", not "Korea,
    Republic of"); `Unknown` for an empty or unknown code."""
    code = (code or "").strip().upper()
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        return UNKNOWN_COUNTRY
    if code in EXTRA_COUNTRIES:
        return EXTRA_COUNTRIES[code]
    found = pycountry.countries.get(alpha_2=code)
    if found is None:
        return UNKNOWN_COUNTRY
    return str(getattr(found, "common_name", None) or found.name)


def flag(code: str | None) -> str:
    """The flag emoji of a country code: its two letters as regional indicator symbols."""
    code = (code or "").strip().upper()
    if country_name(code) == UNKNOWN_COUNTRY:
        return ""
    return "".join(chr(_REGIONAL_A + ord(letter) - ord("A")) for letter in code)


def country(code: str | None) -> str:
    """`🇩🇪 Germany`; `Unknown` (no flag) for an empty or unknown code."""
    name = country_name(code)
    return name if name == UNKNOWN_COUNTRY else f"{flag(code)} {name}"


def dimension_value(dimension: str, value: str | None) -> str:
    """A breakdown row's value as the table shows it."""
    text = (value or "").strip()
    if dimension in COUNTRY_DIMENSIONS:
        return country_name(text)  # the flag is `country`'s, where a template wants it
    if dimension in CHANNEL_DIMENSIONS and text:
        return CHANNELS.get(text, text)
    if dimension == "devices" and text:
        return text.capitalize()  # "desktop" as stored, "Desktop" as read
    if text:
        return text
    return DIRECT if dimension in SOURCE_DIMENSIONS else NOT_SET


def number(n: float | None) -> str:
    """`1,234`; `12.3k` from ten thousand, `4.5M` from a million; `1.25` keeps its decimals
    (at most two); `—` for None."""
    value = _finite(n)
    if value is None:
        return MISSING
    if abs(round(value / 1_000, 1)) >= 1_000:  # 999,960 is 1M, not 1000k
        return _short(value / 1_000_000, "M")
    if abs(value) >= 10_000:
        return _short(value / 1_000, "k")
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _short(value: float, unit: str) -> str:
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text}{unit}"


def percent(n: float | None) -> str:
    """`25%`, `33.3%` (one decimal at most); `—` for None."""
    value = _finite(n)
    if value is None:
        return MISSING
    return f"{value:.1f}".removesuffix(".0") + "%"


def size(n: float | None) -> str:
    """Bytes as `840 B`, `12.3 KB`, `4.5 MB`, `1.2 GB` (powers of 1,000); `—` for None."""
    value = _finite(n)
    if value is None:
        return MISSING
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1_000 or unit == "GB":
            break
        value /= 1_000
    return f"{value:.0f} B" if unit == "B" else f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _value_of(value: str | None, dimension: str) -> str:
    return dimension_value(dimension, value)


# Jinja filter name → function; a filter receives the piped value first, so in a template
# it is `{{ row.value|dimension_value(dimension) }}`
FILTERS: dict[str, Callable[..., str]] = {
    "duration": duration,
    "country": country,
    "dimension_value": _value_of,
    "number": number,
    "percent": percent,
    "size": size,
}
