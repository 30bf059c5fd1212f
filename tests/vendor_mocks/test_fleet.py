"""The fleet behind both mocks: deterministic per seed, several time zones, multi-battery sites."""

from __future__ import annotations

from datetime import UTC, datetime

from vendor_mocks.fleet import Fleet

NOON_UTC = datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp()


def test_values_are_fixed_by_seed_site_and_time():
    one, same, other = Fleet(50, seed=1), Fleet(50, seed=1), Fleet(50, seed=2)
    series = [[one.pv_w(site, NOON_UTC + 300 * k) for k in range(12)] for site in one.sites]
    assert series == [[same.pv_w(site, NOON_UTC + 300 * k) for k in range(12)] for site in same.sites]
    assert series != [[other.pv_w(site, NOON_UTC + 300 * k) for k in range(12)] for site in other.sites]


def test_fifty_sites_span_three_dst_zones_and_some_have_two_batteries():
    fleet = Fleet(50)
    assert {"Europe/Berlin", "America/New_York", "Australia/Sydney"} <= {s.zone_name for s in fleet.sites}
    assert sum(s.batteries == 2 for s in fleet.sites) >= 10


def test_pv_follows_the_local_sun():
    fleet = Fleet(4)
    berlin, new_york = fleet.site(1), fleet.site(2)
    assert fleet.pv_w(berlin, NOON_UTC) > 0 and fleet.pv_w(new_york, NOON_UTC - 6 * 3600) == 0  # 02:00 in New York
