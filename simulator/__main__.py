"""`python -m simulator --port P --stations N --latency-ms L ...`: run the vendor simulator."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from simulator.clock import SimClock
from simulator.faults import FaultInjector, FaultSettings, assign_station_faults
from simulator.server import SimulatorConfig, SimulatorState, make_server
from simulator.telemetry import station_id
from simulator.vendor_v2 import V2Settings


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate is in [0, 1], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed on start)")
    p.add_argument("--stations", type=int, default=100, help="number of sites: site-00001 .. site-N")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every API request (a sleep)")
    p.add_argument("--seed", type=int, default=1, help="telemetry and fault draws are deterministic per seed")
    p.add_argument("--api-key", default="sim-key", help="the X-Api-Key (or bearer token / client secret)")
    p.add_argument("--auth", choices=("api_key", "bearer", "oauth2"), default="api_key")
    p.add_argument("--client-id", default="c2c-sync", help="OAuth2 client id (--auth oauth2)")
    p.add_argument("--client-secret", default=None, help="OAuth2 client secret (default: --api-key)")
    p.add_argument("--token-ttl-s", type=float, default=3600.0, help="lifetime of issued OAuth2 tokens")
    p.add_argument("--reading-interval-s", type=int, default=60, help="telemetry cadence")
    p.add_argument("--v2-interval-s", type=int, default=60, help="/v2 history slot length")
    p.add_argument("--v2-revise-after-s", type=int, default=180, help="/v2: revised values appear this late")
    p.add_argument("--v2-budget-calls", type=int, default=1_000_000, help="/v2/history calls per budget period")
    p.add_argument("--v2-budget-period-s", type=float, default=60.0, help="/v2/history budget period")
    p.add_argument(
        "--clock",
        default="real",
        help="`real`, or `<ISO start>[@speed]`, e.g. 2024-06-01T00:00:00Z@60 (speed 0 = frozen)",
    )
    p.add_argument("--error-rate", type=_rate, default=0.0, help="share of API requests answered 503")
    p.add_argument("--timeout-rate", type=_rate, default=0.0, help="share held for --timeout-s before answering")
    p.add_argument("--malformed-rate", type=_rate, default=0.0, help="share answered with broken JSON")
    p.add_argument("--throttle-rate", type=_rate, default=0.0, help="share answered 429 + Retry-After")
    p.add_argument("--retry-after-s", type=int, default=1, help="Retry-After of throttled answers")
    p.add_argument("--timeout-s", type=float, default=30.0, help="how long a timeout fault holds the answer")
    p.add_argument(
        "--fault-stations",
        action="append",
        default=[],
        metavar="KIND=IDS|COUNT",
        help="stations that always fail with KIND (error, timeout, malformed, throttle, bad_reading, "
        "not_found, forbidden): a comma list of ids or a count; repeatable",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.stations < 0 or args.reading_interval_s <= 0:
        print("--stations must be >= 0 and --reading-interval-s > 0", file=sys.stderr)
        return 2
    config = SimulatorConfig(
        stations=args.stations,
        seed=args.seed,
        api_key=args.api_key,
        auth=args.auth,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl_s=args.token_ttl_s,
        reading_interval_s=args.reading_interval_s,
        v2=V2Settings(
            interval_s=args.v2_interval_s,
            revise_after_s=args.v2_revise_after_s,
            budget_calls=args.v2_budget_calls,
            budget_period_s=args.v2_budget_period_s,
            token_ttl_s=args.token_ttl_s,
        ),
    )
    try:
        pinned = assign_station_faults(
            args.fault_stations, [station_id(i) for i in range(1, args.stations + 1)], args.seed
        )
        settings = FaultSettings(
            error_rate=args.error_rate,
            timeout_rate=args.timeout_rate,
            malformed_rate=args.malformed_rate,
            throttle_rate=args.throttle_rate,
            latency_ms=args.latency_ms,
            retry_after_s=args.retry_after_s,
            timeout_s=args.timeout_s,
            stations=pinned,
        )
        faults = FaultInjector(settings, seed=args.seed)
        faults.update({})  # validates the rates' sum
        clock = SimClock(args.clock)
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    server = make_server(args.host, args.port, SimulatorState(config, clock, faults))
    host, port = str(server.server_address[0]), server.server_address[1]
    print(
        f"simulator listening on http://{host}:{port} stations={args.stations} auth={args.auth} "
        f"latency_ms={args.latency_ms} clock={args.clock}",
        flush=True,
    )

    def _stop(signum, frame) -> None:
        # shutdown() blocks until serve_forever returns, so it must not run on the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
