"""IP → country (always, offline) and region/city (when a MaxMind-format .mmdb is configured).

The default database ships inside the geoip2fast package (IPv4 + IPv6 countries), so geo works
with nothing to download. Private, loopback and invalid addresses resolve to nothing.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import NamedTuple

import maxminddb
from geoip2fast import GeoIP2Fast


class GeoInfo(NamedTuple):
    country: str
    region: str
    city: str


EMPTY = GeoInfo("", "", "")


class GeoLookup:
    def __init__(self, mmdb_path: str = "") -> None:
        self._mmdb = maxminddb.open_database(mmdb_path) if mmdb_path else None
        self._fast: GeoIP2Fast | None = None
        self.lookup = lru_cache(maxsize=65536)(self._lookup)

    def load(self) -> None:
        """Load the bundled country table (~0.15 s); call once at startup, off the event loop."""
        if self._mmdb is None and self._fast is None:
            self._fast = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")

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
        assert self._fast is not None
        code = self._fast.lookup(ip).country_code
        return GeoInfo(code if len(code) == 2 and code.isalpha() else "", "", "")

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
