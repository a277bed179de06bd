"""Which project a Plausible `domain` names: the rank of each project's allowed origins."""

from __future__ import annotations

import pytest

from gatrix.meta.projects import domain_rank, origin_allowed

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("domain", "origins", "rank"),
    [
        ("shop.example.com", ("https://shop.example.com",), 3),
        ("shop.example.com", ("https://shop.example.com:8443",), 2),
        ("shop.example.com", ("*.example.com",), 1),
        ("shop.example.com", ("*",), 0),
        ("shop.example.com", ("other.example.com",), 0),
        ("[2001:db8::10]", ("http://[2001:db8::10]:8080",), 2),
        ("[2001:db8::10]", ("http://[2001:db8::10]",), 3),
        # another IPv6 address sharing the text before its last colon is another host
        ("[2001:db8::10]", ("[2001:db8::ffff]",), 0),
        ("[2001:db8::10]:8080", ("[2001:db8::ffff]",), 0),
        # an internationalised host in either spelling (browsers send the ASCII one)
        ("xn--bcher-kva.de", ("https://bücher.de",), 3),
        ("bücher.de", ("xn--bcher-kva.de",), 3),
        ("shop.bücher.de", ("*.xn--bcher-kva.de",), 1),
    ],
)
def test_domain_rank(domain: str, origins: tuple[str, ...], rank: int) -> None:
    assert domain_rank(domain, origins) == rank


def test_an_internationalised_origin_is_allowed_in_either_spelling() -> None:
    assert origin_allowed("https://xn--bcher-kva.de", ("https://bücher.de",))
    assert origin_allowed("https://www.bücher.de", ("https://xn--bcher-kva.de",))
    assert origin_allowed("https://shop.xn--bcher-kva.de", ("*.bücher.de",))
