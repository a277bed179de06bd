"""Placeholder until the wording module lands (see the numbers branch)."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def number(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.2f}"


def country(code: str) -> str:
    import pycountry

    found = pycountry.countries.get(alpha_2=code) if code else None
    return getattr(found, "common_name", None) or getattr(found, "name", None) or "Unknown"


def dimension_value(dimension: str, value: str) -> str:
    if not value:
        return "Direct / None" if dimension in ("referrers", "referrer_types") else "(not set)"
    return country(value) if dimension == "countries" else value
