"""Human wording: durations, countries, breakdown values and numbers, and the Jinja filters
that give the templates the same words."""

from __future__ import annotations

import math

import pytest

from gatrix.app import template_environment
from gatrix.settings import Settings
from gatrix.web import humane


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (math.nan, "—"),
        (0, "0s"),
        (0.4, "0s"),
        (45, "45s"),
        (59.6, "1m 00s"),
        (224, "3m 44s"),
        (184.0, "3m 04s"),
        (3599, "59m 59s"),
        (3720, "1h 02m"),
        (90061, "25h 01m"),
        (-3, "0s"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert humane.duration(seconds) == text


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("DE", "🇩🇪 Germany"),
        ("de", "🇩🇪 Germany"),
        ("KR", "🇰🇷 South Korea"),  # the common name, not "Korea, Republic of"
        ("TW", "🇹🇼 Taiwan"),
        ("US", "🇺🇸 United States"),
        ("XK", "🇽🇰 Kosovo"),
        ("", "Unknown"),
        (None, "Unknown"),
        ("ZZ", "Unknown"),
        ("--", "Unknown"),
        ("DEU", "Unknown"),
        ("<b", "Unknown"),
    ],
)
def test_country(code: str | None, text: str) -> None:
    assert humane.country(code) == text


def test_flags_are_regional_indicator_pairs() -> None:
    assert humane.flag("FR") == "\U0001f1eb\U0001f1f7"
    assert humane.flag("") == "" and humane.flag("ZZ") == ""


@pytest.mark.parametrize(
    ("dimension", "value", "text"),
    [
        ("referrers", "", "Direct / None"),
        ("channels", "", "Direct / None"),
        ("referrer_types", "", "Direct / None"),
        ("utm_source", "  ", "(not set)"),
        ("utm_campaign", None, "(not set)"),
        ("referrers", "Google", "Google"),
        ("channels", "search", "Search"),
        ("referrer_types", "ai", "AI assistants"),
        ("channels", "carrier-pigeon", "carrier-pigeon"),
        ("countries", "KR", "South Korea"),
        ("countries", "", "Unknown"),
        ("cities", "", "(not set)"),
        ("screens", "", "(not set)"),
        ("pages", "/pricing", "/pricing"),
    ],
)
def test_dimension_value(dimension: str, value: str | None, text: str) -> None:
    assert humane.dimension_value(dimension, value) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "—"),
        (0, "0"),
        (7, "7"),
        (1234, "1,234"),
        (9999, "9,999"),
        (10_000, "10k"),
        (12_345, "12.3k"),
        (999_949, "999.9k"),
        (999_960, "1M"),
        (4_500_000, "4.5M"),
        (1.25, "1.25"),
        (2.0, "2"),
        (1234.5, "1,234.5"),
        (-1500, "-1,500"),
        (math.inf, "—"),
    ],
)
def test_number(n: float | None, text: str) -> None:
    assert humane.number(n) == text


def test_percent() -> None:
    assert [humane.percent(v) for v in (None, 25.0, 33.33, 100)] == ["—", "25%", "33.3%", "100%"]


def test_the_templates_have_the_same_words_as_filters() -> None:
    env = template_environment(Settings(root_path=""))
    rendered = env.from_string(
        "{{ 224|duration }}|{{ none|duration }}|{{ 'DE'|country }}|"
        "{{ ''|dimension_value('referrers') }}|{{ 'KR'|dimension_value('countries') }}|"
        "{{ ''|dimension_value('cities') }}|{{ 12345|number }}|{{ 25.0|percent }}"
    ).render()
    assert rendered == ("3m 44s|—|🇩🇪 Germany|Direct / None|South Korea|(not set)|12.3k|25%")
