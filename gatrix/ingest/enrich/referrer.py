"""Page URL → origin/path/query, UTM and click ids; referrer → name and channel type.

Channel types: `search`, `social`, `email`, `ai`, `video`, `paid` (a click id or a paid UTM
medium on the landing page), `link` (any other site). A referrer from the page's own host is
dropped: internal navigation is not a source.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

# host (without "www.") → (display name, type); looked up for the host and each parent domain.
_KNOWN: dict[str, tuple[str, str]] = {}


def _add(kind: str, entries: dict[str, tuple[str, ...]]) -> None:
    for name, hosts in entries.items():
        for host in hosts:
            _KNOWN[host] = (name, kind)


_add(
    "search",
    {
        "Google": (
            "google.com",
            "google.co.uk",
            "google.de",
            "google.fr",
            "google.co.jp",
            "google.co.kr",
            "google.ca",
            "google.com.au",
            "google.co.in",
            "google.es",
            "google.it",
            "google.com.br",
            "google.nl",
            "google.pl",
            "google.com.mx",
        ),
        "Bing": ("bing.com", "cn.bing.com"),
        "DuckDuckGo": ("duckduckgo.com",),
        "Yahoo!": ("search.yahoo.com", "yahoo.com", "yahoo.co.jp"),
        "Yandex": ("yandex.ru", "yandex.com", "ya.ru"),
        "Baidu": ("baidu.com", "m.baidu.com"),
        "Ecosia": ("ecosia.org",),
        "Naver": ("search.naver.com", "naver.com"),
        "Daum": ("search.daum.net", "daum.net"),
        "Seznam": ("seznam.cz", "search.seznam.cz"),
        "Qwant": ("qwant.com",),
        "Startpage": ("startpage.com",),
        "Brave Search": ("search.brave.com",),
        "Sogou": ("sogou.com",),
        "Ask": ("ask.com",),
        "AOL": ("search.aol.com",),
        "Kagi": ("kagi.com",),
    },
)
_add(
    "social",
    {
        "Facebook": (
            "facebook.com",
            "m.facebook.com",
            "l.facebook.com",
            "lm.facebook.com",
            "fb.me",
        ),
        "Instagram": ("instagram.com", "l.instagram.com"),
        "X": ("t.co", "twitter.com", "x.com", "mobile.twitter.com"),
        "LinkedIn": ("linkedin.com", "lnkd.in"),
        "Reddit": ("reddit.com", "old.reddit.com", "out.reddit.com"),
        "Hacker News": ("news.ycombinator.com",),
        "Pinterest": ("pinterest.com", "pin.it"),
        "TikTok": ("tiktok.com",),
        "Threads": ("threads.net", "threads.com"),
        "Bluesky": ("bsky.app",),
        "Mastodon": ("mastodon.social",),
        "VK": ("vk.com",),
        "Weibo": ("weibo.com",),
        "Tumblr": ("tumblr.com",),
        "Quora": ("quora.com",),
        "Discord": ("discord.com", "discordapp.com"),
        "Telegram": ("t.me", "web.telegram.org"),
        "WhatsApp": ("whatsapp.com", "web.whatsapp.com"),
        "Snapchat": ("snapchat.com",),
        "Product Hunt": ("producthunt.com",),
        "Lobsters": ("lobste.rs",),
    },
)
_add(
    "video",
    {
        "YouTube": ("youtube.com", "m.youtube.com", "youtu.be"),
        "Twitch": ("twitch.tv",),
        "Vimeo": ("vimeo.com",),
    },
)
_add(
    "email",
    {
        "Gmail": ("mail.google.com",),
        "Outlook": ("outlook.live.com", "outlook.office.com", "outlook.office365.com"),
        "Yahoo! Mail": ("mail.yahoo.com",),
        "Proton Mail": ("mail.proton.me",),
        "Fastmail": ("fastmail.com", "app.fastmail.com"),
        "GMX": ("gmx.net", "gmx.de"),
        "Web.de": ("web.de",),
        "Naver Mail": ("mail.naver.com",),
    },
)
_add(
    "ai",
    {
        "ChatGPT": ("chatgpt.com", "chat.openai.com"),
        "Perplexity": ("perplexity.ai",),
        "Claude": ("claude.ai",),
        "Gemini": ("gemini.google.com", "bard.google.com"),
        "Copilot": ("copilot.microsoft.com",),
        "DeepSeek": ("chat.deepseek.com",),
        "Grok": ("grok.com",),
        "Meta AI": ("meta.ai",),
        "Mistral": ("chat.mistral.ai",),
        "Phind": ("phind.com",),
        "You.com": ("you.com",),
        "Poe": ("poe.com",),
    },
)
# Android apps announce themselves as android-app://package
_APPS: dict[str, tuple[str, str]] = {
    "com.google.android.gm": ("Gmail", "email"),
    "com.google.android.googlequicksearchbox": ("Google", "search"),
    "com.slack": ("Slack", "social"),
    "org.telegram.messenger": ("Telegram", "social"),
    "com.linkedin.android": ("LinkedIn", "social"),
    "com.reddit.frontpage": ("Reddit", "social"),
}
# Search engines with many country domains, matched by their second-level label.
_SEARCH_BRANDS = {
    "google": "Google",
    "bing": "Bing",
    "yahoo": "Yahoo!",
    "yandex": "Yandex",
    "baidu": "Baidu",
    "duckduckgo": "DuckDuckGo",
    "ecosia": "Ecosia",
}

CLICK_IDS = {
    "gclid": "google",
    "gbraid": "google",
    "wbraid": "google",
    "dclid": "google",
    "fbclid": "meta",
    "msclkid": "microsoft",
    "ttclid": "tiktok",
    "twclid": "x",
    "li_fat_id": "linkedin",
    "yclid": "yandex",
    "epik": "pinterest",
    "rdt_cid": "reddit",
    "sccid": "snapchat",
}
PAID_MEDIUMS = {
    "cpc",
    "ppc",
    "paid",
    "paidsearch",
    "paid_search",
    "paid_social",
    "paidsocial",
    "cpm",
    "cpv",
    "display",
    "banner",
    "ads",
    "ad",
}


def strip_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


class PageInfo(NamedTuple):
    origin: str
    path: str
    query: str
    host: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_term: str
    utm_content: str
    click_id_type: str
    click_id: str


EMPTY_PAGE = PageInfo("", "", "", "", "", "", "", "", "", "", "")


@lru_cache(maxsize=16384)
def parse_page(url: str) -> PageInfo:
    """A full URL (`https://a.com/x?y`) or a bare path (`/x?y`, as the Gatrix proxy sends)."""
    if not url:
        return EMPTY_PAGE
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return EMPTY_PAGE._replace(path=url[:2000])
    host = (parts.hostname or "").lower()
    origin = f"{parts.scheme}://{parts.netloc.lower()}" if parts.scheme and parts.netloc else ""
    path = parts.path or ("/" if origin else "")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        params.setdefault(key.lower(), value)
    click_type, click_id = "", ""
    for key, kind in CLICK_IDS.items():
        if key in params:
            click_type, click_id = kind, params[key][:200]
            break
    source = params.get("utm_source") or params.get("ref") or params.get("source") or ""
    return PageInfo(
        origin=origin,
        path=path[:2000],
        query=parts.query[:2000],
        host=strip_www(host),
        utm_source=source[:200],
        utm_medium=params.get("utm_medium", "")[:200],
        utm_campaign=params.get("utm_campaign", "")[:200],
        utm_term=params.get("utm_term", "")[:200],
        utm_content=params.get("utm_content", "")[:200],
        click_id_type=click_type,
        click_id=click_id,
    )


class ReferrerInfo(NamedTuple):
    url: str
    name: str
    type: str


NO_REFERRER = ReferrerInfo("", "", "")


@lru_cache(maxsize=16384)
def classify_host(host: str) -> tuple[str, str]:
    host = strip_www(host.lower().rstrip("."))
    labels = host.split(".")
    for i in range(len(labels) - 1):
        hit = _KNOWN.get(".".join(labels[i:]))
        if hit:
            return hit
    for label in labels[:-1]:
        if label in _SEARCH_BRANDS and len(labels) <= 4:
            return _SEARCH_BRANDS[label], "search"
    return host, "link"


@lru_cache(maxsize=16384)
def parse_referrer(referrer: str, page_host: str) -> ReferrerInfo:
    if not referrer:
        return NO_REFERRER
    referrer = referrer.strip()[:2000]
    if referrer.startswith("android-app://"):
        package = referrer[len("android-app://") :].split("/", 1)[0]
        name, kind = _APPS.get(package, (package, "link"))
        return ReferrerInfo(referrer, name, kind)
    try:
        host = (urlsplit(referrer).hostname or "").lower()
    except ValueError:
        return NO_REFERRER
    if not host:
        return NO_REFERRER  # a relative path (SPA navigation) is internal
    host = strip_www(host)
    if page_host and host == page_host:
        return NO_REFERRER
    name, kind = classify_host(host)
    return ReferrerInfo(referrer, name, kind)


def channel(referrer: ReferrerInfo, page: PageInfo) -> str:
    """Paid traffic is recognised by the landing page, whatever the referrer says."""
    if page.click_id_type or page.utm_medium.lower() in PAID_MEDIUMS:
        return "paid"
    if referrer.type:
        return referrer.type
    medium = page.utm_medium.lower()
    if medium in ("email", "e-mail", "newsletter"):
        return "email"
    if medium in ("social", "social-network", "sm"):
        return "social"
    return ""
