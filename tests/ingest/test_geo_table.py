"""The compact country table answers exactly as the geoip2fast package's own lookup, on the
same bundled data: at every kind of boundary (a network's first and last address, the address
before and after it) and at random addresses, IPv4 and IPv6."""

from __future__ import annotations

import ipaddress
import random

import pytest
from geoip2fast import GeoIP2Fast

from gatrix.ingest.enrich.geo import BUNDLED, CountryTable, GeoLookup

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def both() -> tuple[CountryTable, GeoIP2Fast]:
    table = CountryTable.bundled()
    assert table is not None, "the bundled data's layout is the one the table reads"
    return table, GeoIP2Fast(geoip2fast_data_file=BUNDLED)


def _package(fast: GeoIP2Fast, address: int) -> str:
    code = fast.lookup(str(ipaddress.ip_address(address))).country_code
    return code if len(code) == 2 and code.isalpha() else ""


def _addresses(table: CountryTable, rng: random.Random) -> list[int]:
    starts = [(table._hi[i] << 64) | table._lo[i] for i in range(len(table._hi))]
    picked = rng.sample(range(len(starts)), 3000)
    out: list[int] = []
    for i in picked:
        bits = 32 if starts[i] < 2**32 else 128
        size = 1 << (bits - table._prefix[i])
        out += [starts[i], starts[i] - 1, starts[i] + size - 1, starts[i] + size]
        out.append(starts[i] + rng.randrange(size))
    out += [rng.randrange(2**32) for _ in range(5000)]
    # global unicast IPv6 (2000::/3), where the table's IPv6 networks lie
    out += [(0b001 << 125) | rng.randrange(2**125) for _ in range(5000)]
    return [a for a in out if 0 <= a < 2**128 and a != 2**32]


def test_the_table_answers_as_the_package_does(both: tuple[CountryTable, GeoIP2Fast]) -> None:
    table, fast = both
    addresses = _addresses(table, random.Random(7))
    differ = [a for a in addresses if table.country(a) != _package(fast, a)]
    assert not differ, [(str(ipaddress.ip_address(a)), table.country(a)) for a in differ[:5]]
    # the sample reaches real answers, not only empty ones
    found = {table.country(a) for a in addresses}
    assert {"US", "DE", "GB", "FR", "JP", "BR"} <= found


def test_lookup_uses_the_table() -> None:
    geo = GeoLookup()
    geo.load()
    assert geo._table is not None and geo._fast is None
    assert geo.lookup("8.8.8.8").country == "US"
    assert geo.lookup("2a00:1450:4001:82b::200e").country == "DE"
    assert geo.lookup("10.0.0.1").country == ""
