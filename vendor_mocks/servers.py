"""Start and stop the vendor mocks: a context manager for the tests and the demo, and a CLI.

    with start_solaredge(sites=50) as se:            # se.url, se.app (SolarEdgeMock), se.clock
        requests.get(f"{se.url}/sites/list", params={"api_key": se.app.api_key})

    python -m vendor_mocks fusionsolar --port 8090 --sites 60 --start 2024-03-31T00:00:00Z --speed 1

The pytest fixtures over `start_mock` (`fusionsolar_mock`, `solaredge_mock`, `vendor_mock_factory`)
live in tests/support/vendor_mocks.py, so this package needs no pytest.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from vendor_mocks.base import MockClock, MockServer
from vendor_mocks.fleet import Fleet
from vendor_mocks.fusionsolar import FusionSolarMock
from vendor_mocks.solaredge import SolarEdgeMock

#: The Sunday Europe/Berlin moves its clocks forward (at 01:00 UTC); America/New_York changed three
#: weeks earlier, Australia/Sydney goes back a week later (2024-04-06 16:00 UTC).
MOCK_START = "2024-03-31T00:00:00Z"


APPS: dict[str, type[FusionSolarMock] | type[SolarEdgeMock]] = {
    "fusionsolar": FusionSolarMock,
    "solaredge": SolarEdgeMock,
}


@contextmanager
def start_mock(
    vendor: str,
    sites: int = 60,
    seed: int = 1,
    start: str = MOCK_START,
    speed: float = 0.0,
    port: int = 0,
    report_lag_s: float = 0.0,
    **options: Any,
) -> Iterator[MockServer]:
    """A started mock of `vendor` over `sites` sites, each reporting `report_lag_s` late (unless set
    per site later); `options` go to the vendor's mock class."""
    fleet = Fleet(sites, seed, default_lag_s=report_lag_s)
    app = APPS[vendor](fleet=fleet, clock=MockClock(start, speed), **options)
    with MockServer(app, port=port) as server:
        yield server


start_fusionsolar = partial(start_mock, "fusionsolar")
start_solaredge = partial(start_mock, "solaredge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vendor_mocks", description=__doc__)
    parser.add_argument("vendor", choices=sorted(APPS))
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--sites", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", default=MOCK_START, help="the mock clock's start (ISO 8601, UTC)")
    parser.add_argument("--speed", type=float, default=1.0, help="mock seconds per wall second (0 = frozen)")
    parser.add_argument("--report-lag-s", type=float, default=0.0, help="how late every site reports its values")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="the vendor's durations times this (1/60: 5 minutes last 5 s)"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    options = {"sites": args.sites, "seed": args.seed, "start": args.start, "speed": args.speed}
    with start_mock(
        args.vendor, port=args.port, report_lag_s=args.report_lag_s, time_scale=args.time_scale, **options
    ) as s:
        print(f"{args.vendor} mock listening on {s.url}", flush=True)
        stop.wait()
    return 0
