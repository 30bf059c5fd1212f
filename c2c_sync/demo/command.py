"""`c2c-sync demo [options]`: the Typer command (registered on the operator CLI's app in cli.py).

Defaults live in `DemoOptions`; this module maps flags and environment variables onto it and puts
the orchestration (run.py) together with its live display (display.py) and closing report (summary.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from c2c_sync.demo.display import DemoDisplay
from c2c_sync.demo.options import DemoOptions, DemoUsageError
from c2c_sync.demo.run import run_demo
from c2c_sync.demo.summary import print_report
from c2c_sync.demo.vendors import DEFAULT_STATIONS, VENDORS

_DEFAULT = DemoOptions()


def demo_command(
    vendor: Annotated[
        str,
        typer.Option(
            help=f"The vendor API: {' | '.join(VENDORS)} (a mock of that vendor's public API, vendor_mocks/).",
        ),
    ] = _DEFAULT.vendor,
    stations: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Stations the vendor API serves (default: "
            + ", ".join(f"{v} {n}" for v, n in DEFAULT_STATIONS.items())
            + ").",
        ),
    ] = None,
    cycles: Annotated[
        int, typer.Option(min=1, help="Cycles started through trigger → SNS → SQS → worker.")
    ] = _DEFAULT.cycles,
    redis_cycles: Annotated[
        int, typer.Option(min=0, help="Then cycles through trigger → Redis pub/sub → worker (0: skip that phase).")
    ] = _DEFAULT.redis_cycles,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between scheduled invocations (the EventBridge rate, compressed).")
    ] = _DEFAULT.interval_s,
    latency_ms: Annotated[
        float, typer.Option(min=0, help="Vendor API latency added to every request (simulator only).")
    ] = _DEFAULT.latency_ms,
    error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of vendor requests answered 503 (simulator only).")
    ] = _DEFAULT.error_rate,
    timeout_rate: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Share of vendor requests that time out, each holding a station ~10 s (simulator only)."
        ),
    ] = _DEFAULT.timeout_rate,
    throttle_rate: Annotated[
        float,
        typer.Option(min=0, max=1, help="Share of vendor requests answered 429 with Retry-After (simulator only)."),
    ] = _DEFAULT.throttle_rate,
    speed: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Simulated seconds per real second: new readings per station and cycle = interval × speed / 60 "
            "(simulator only; a vendor mock runs one vendor period per interval).",
        ),
    ] = _DEFAULT.speed,
    config_env: Annotated[
        str,
        typer.Option(
            help="config/<name>.yaml the deployed values come from (worker mode, max cycle, schedule command)."
        ),
    ] = _DEFAULT.config_env,
    mqtt_url: Annotated[
        str | None,
        typer.Option(
            envvar="MQTT_URL", help="Use this MQTT broker instead of starting mosquitto (mqtt:// or mqtts://)."
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            envvar="REDIS_URL", help="Use this Redis instead of starting redis-server (redis:// or rediss://)."
        ),
    ] = None,
    mqtt_username: Annotated[str | None, typer.Option(envvar="MQTT_USERNAME", help="For an external broker.")] = None,
    keep_logs: Annotated[bool, typer.Option(help="Keep the run's log directory even when it succeeds.")] = False,
    workdir: Annotated[Path | None, typer.Option(help="Directory for logs and service files (kept).")] = None,
    drop_first_reading_of: Annotated[
        str | None,
        typer.Option(hidden=True, help="TEST ONLY: the subscriber ignores the first reading of this station."),
    ] = None,
) -> None:
    """Run the whole system locally: trigger → SNS → SQS (and Redis pub/sub) → worker → MQTT.

    Starts redis-server, mosquitto, moto's server and the vendor simulator (or, with --vendor, a mock
    of a real vendor's API read through its shipped definition) on free ports, creates
    the start topic/queue/DLQ from the messaging stack's template, runs the worker as its own
    process, counts what reaches the broker with an independent subscriber, then stops everything.
    Exit 0: no reading lost; 1: a reading was lost; 3: the demo could not run to its end.
    """
    options = DemoOptions(
        vendor=vendor,
        stations=stations if stations is not None else DEFAULT_STATIONS.get(vendor, _DEFAULT.stations),
        cycles=cycles,
        redis_cycles=redis_cycles,
        interval_s=interval,
        latency_ms=latency_ms,
        error_rate=error_rate,
        timeout_rate=timeout_rate,
        throttle_rate=throttle_rate,
        speed=speed,
        config_env=config_env,
        mqtt_url=mqtt_url,
        redis_url=redis_url,
        mqtt_username=mqtt_username,
        # From the environment only: a --flag would show the password in the process list.
        mqtt_password=os.environ.get("MQTT_PASSWORD") or None,
        keep_logs=keep_logs,
        workdir=workdir,
        drop_first_reading_of=drop_first_reading_of,
    )
    try:
        options.validate()
    except DemoUsageError as exc:
        typer.echo(f"c2c-sync demo: {exc}", err=True)
        raise typer.Exit(2) from None
    console = Console(highlight=False)
    with DemoDisplay(console) as display:
        result = run_demo(options, display)
    print_report(result, console)
    raise typer.Exit(result.exit_code)
