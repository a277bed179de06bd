"""User agent → browser, OS, device; and the crawler check. Both cached by UA string.

Parsing costs ~15 µs and the crawler regex ~130 µs per new UA, so a few thousand cached UAs
(real traffic repeats the same strings) make both nearly free.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

import crawleruseragents
import ua_parser

_MOBILE = re.compile(r"Mobi|iPhone|iPod|Android.*Mobile|Windows Phone|BlackBerry|Opera Mini")
_TABLET = re.compile(r"iPad|Tablet|Kindle|Silk/|PlayBook|Android(?!.*Mobile)")
_TV = re.compile(r"SmartTV|SMART-TV|GoogleTV|AppleTV|HbbTV|CrKey|Roku|BRAVIA|Tizen.*TV|WebOS.*TV")
_CONSOLE = re.compile(r"PlayStation|Xbox|Nintendo")
# Automation that the crawler list does not always name: headless browsers and HTTP libraries.
_AUTOMATION = re.compile(r"HeadlessChrome|PhantomJS|Lighthouse|Puppeteer|Playwright|Selenium")


class UserAgentInfo(NamedTuple):
    browser: str
    browser_version: str
    os: str
    os_version: str
    device: str  # desktop | mobile | tablet | tv | console | other
    brand: str
    model: str


def _version(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


@lru_cache(maxsize=8192)
def parse_user_agent(user_agent: str) -> UserAgentInfo:
    if not user_agent:
        return UserAgentInfo("", "", "", "", "", "", "")
    result = ua_parser.parse(user_agent[:1000])
    ua, os_, dev = result.user_agent, result.os, result.device
    browser = ua.family if ua and ua.family != "Other" else ""
    os_name = os_.family if os_ and os_.family != "Other" else ""
    brand = (dev.brand or "") if dev else ""
    model = (dev.model or "") if dev else ""
    return UserAgentInfo(
        browser=browser,
        browser_version=_version(ua.major, ua.minor) if ua and browser else "",
        os=os_name,
        os_version=_version(os_.major, os_.minor) if os_ and os_name else "",
        device=device_type(user_agent, os_name),
        brand="" if brand == "Generic" else brand,
        model="" if model in ("Other", "Smartphone", "Tablet") else model,
    )


def device_type(user_agent: str, os_name: str) -> str:
    if _TV.search(user_agent):
        return "tv"
    if _CONSOLE.search(user_agent):
        return "console"
    if _TABLET.search(user_agent):
        return "tablet"
    if _MOBILE.search(user_agent) or os_name in ("iOS", "Android"):
        return "mobile"
    if os_name:
        return "desktop"
    return "other"


@lru_cache(maxsize=8192)
def is_bot(user_agent: str) -> bool:
    if not user_agent or len(user_agent) < 10:
        return True  # browsers always send a real UA; empty or tiny ones are scripts
    if _AUTOMATION.search(user_agent):
        return True
    return bool(crawleruseragents.is_crawler(user_agent[:1000]))
