"""IP → country (always, offline) and region/city (when a MaxMind-format .mmdb is configured).

The default database ships inside the geoip2fast package (IPv4 + IPv6 countries), so geo works
with nothing to download. Private, loopback and invalid addresses resolve to nothing.

Its ~790,000 networks are kept as flat arrays (`CountryTable`), not as the package's lists of
Python integers: 46 → 24 MB in every process that takes hits (the primary and each ingest
process), with the same answers (tests/ingest/test_geo_table.py holds the two lookups alike).
"""

from __future__ import annotations

import gzip
import ipaddress
import pickle
from array import array
from bisect import bisect_left, bisect_right
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

import maxminddb
from geoip2fast import GeoIP2Fast


class GeoInfo(NamedTuple):
    country: str
    region: str
    city: str


EMPTY = GeoInfo("", "", "")
BUNDLED = "geoip2fast-ipv6.dat.gz"
_LOW64 = 2**64 - 1
_MAX_V4 = 2**32  # as the package bounds IPv4 (one more than the largest address)
# the package's table names private and reserved networks in its first 16 entries
_RESERVED_NAMES = 16


def _country_code(code: str) -> str:
    """An ISO country code, or nothing (the data also names regions, such as `ASIA`)."""
    return code if len(code) == 2 and code.isalpha() else ""


class CountryTable:
    """Network starts as two 64-bit halves, each network's prefix length and country (an index
    into the package's names). A lookup finds the last network starting at or below the
    address, and answers its country when the address lies inside it, as the package's own
    lookup does."""

    def __init__(self, codes: list[str]) -> None:
        """`codes`: the country code of each of the package's names ("" for none)."""
        self._codes = codes
        self._hi, self._lo = array("Q"), array("Q")
        self._prefix, self._country = array("B"), array("H")

    @classmethod
    def bundled(cls) -> CountryTable | None:
        """The table inside the geoip2fast package; None if its layout is not the one known
        here (the caller then uses the package's own lookup)."""
        with resources.files("geoip2fast").joinpath(BUNDLED).open("rb") as raw:
            loaded = pickle.load(gzip.GzipFile(fileobj=raw))  # the package's own data file
        version, source, _count, database = loaded
        if version not in (120, 121) or not source.get("country") or source.get("asn"):
            return None
        _roots, names, firsts, countries, prefixes = database
        table = cls(
            [
                "" if i < _RESERVED_NAMES else _country_code(str(name).split(":")[0])
                for i, name in enumerate(names)
            ]
        )
        # the package's networks come in sorted chunks; appended one by one, so no list of
        # ~790,000 tuples is ever built
        for chunk in zip(firsts, countries, prefixes, strict=True):
            for first, country, prefix in zip(*chunk, strict=True):
                table._hi.append(first >> 64)
                table._lo.append(first & _LOW64)
                table._prefix.append(prefix)
                table._country.append(country)
        return table

    def country(self, address: int) -> str:
        at = self._last_start(address)
        if at < 0:
            return ""
        first = (self._hi[at] << 64) | self._lo[at]
        bits = 32 if address <= _MAX_V4 else 128
        if address > first + (1 << (bits - self._prefix[at])) - 1:
            return ""
        return self._codes[self._country[at]]

    def _last_start(self, address: int) -> int:
        hi, lo = address >> 64, address & _LOW64
        left = bisect_left(self._hi, hi)
        right = bisect_right(self._hi, hi, left)
        # among the starts sharing the high half, the last whose low half is not above; when
        # none is, the one before them (its high half is smaller)
        return bisect_right(self._lo, lo, left, right) - 1


class GeoLookup:
    def __init__(self, mmdb_path: str = "") -> None:
        self._mmdb = maxminddb.open_database(mmdb_path) if mmdb_path else None
        self._table: CountryTable | None = None
        self._fast: GeoIP2Fast | None = None
        self.lookup = lru_cache(maxsize=65536)(self._lookup)

    def load(self) -> None:
        """Load the bundled country table (~0.5 s); call once at startup, off the event loop."""
        if self._mmdb is None and self._table is None and self._fast is None:
            self._table = CountryTable.bundled()
            if self._table is None:
                self._fast = GeoIP2Fast(geoip2fast_data_file=BUNDLED)

    def _lookup(self, ip: str) -> GeoInfo:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return EMPTY
        if not addr.is_global:
            return EMPTY
        if self._mmdb is not None:
            return self._from_mmdb(ip)
        self.load()
        if self._table is not None:
            code = self._table.country(int(addr))
        else:
            assert self._fast is not None
            code = _country_code(self._fast.lookup(ip).country_code)
        return GeoInfo(code, "", "")

    def _from_mmdb(self, ip: str) -> GeoInfo:
        assert self._mmdb is not None
        record = self._mmdb.get(ip)
        if not isinstance(record, dict):
            return EMPTY
        country = (record.get("country") or record.get("registered_country") or {}).get(
            "iso_code", ""
        )
        subdivisions = record.get("subdivisions") or [{}]
        region = subdivisions[0].get("names", {}).get("en", "") if subdivisions else ""
        city = (record.get("city") or {}).get("names", {}).get("en", "")
        return GeoInfo(country or "", region or "", city or "")
