"""The worker's command line (`c2c-sync-worker` / `python -m functions.sync_worker`).

    run [--once] [--dry-run] [--stations a,b]   serve signals (or one cycle), endpoints as URLs
    validate-config                             check the configuration, print it with secrets masked
    health                                      container health check (exit 0 = healthy)

Every setting is an environment variable `C2C_<NAME>`; the flags below override them. A bad value
refuses to start (exit 2) with the variable named.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from functions.common.state import CycleRecord
from functions.sync_worker.settings import ConfigError, WorkerSettings, load_settings

EXIT_CONFIG = 2

#: flag -> settings field; each also reads C2C_<FIELD> from the environment.
_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--env": ("env", {}),
    "--mode": ("mode", {"choices": ["per-signal", "continuous"]}),
    "--interval-s": ("interval_s", {"type": float}),
    "--mqtt-url": ("mqtt_url", {}),
    "--mqtt-client-id": ("mqtt_client_id", {}),
    "--mqtt-username": ("mqtt_username", {}),
    "--mqtt-topic": ("mqtt_topic", {}),
    "--mqtt-ca-file": ("mqtt_ca_file", {}),
    "--mqtt-cert-file": ("mqtt_cert_file", {}),
    "--mqtt-key-file": ("mqtt_key_file", {}),
    "--mqtt-protocol": ("mqtt_protocol", {"choices": ["3.1.1", "5"]}),
    "--mqtt-status-topic": ("mqtt_status_topic", {}),
    "--mqtt-identity-mode": ("mqtt_identity_mode", {"choices": ["gateway", "per-device"]}),
    "--mqtt-max-connections": ("mqtt_max_connections", {"type": int}),
    "--platform-profile": ("platform_profile", {}),
    "--redis-url": ("redis_url", {}),
    "--source-url": ("source_url", {}),
    "--source-config": ("source_config", {}),
    "--signal-url": ("signal_url", {}),
    "--stations": ("stations", {}),
    "--concurrency": ("concurrency", {"type": int}),
    "--page-size": ("page_size", {"type": int}),
    "--backfill-window-s": ("backfill_window_s", {"type": float}),
    "--max-inflight": ("max_inflight", {"type": int}),
    "--shutdown-deadline-s": ("shutdown_deadline_s", {"type": float}),
    "--status-file": ("status_file", {}),
}


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for flag, (field, kwargs) in _FLAGS.items():
        parser.add_argument(flag, dest=field, default=None, help=f"overrides C2C_{field.upper()}", **kwargs)
    parser.add_argument(
        "--mqtt-insecure",
        dest="mqtt_insecure",
        action="store_const",
        const=True,
        default=None,
        help="local use only: plaintext to a non-local broker / no TLS verification",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c2c-sync-worker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve start signals (the container's default command)")
    _add_setting_flags(run)
    run.add_argument(
        "--once",
        action="store_true",
        help="run one cycle and exit (1 if it did not run, the station list failed or a station failed)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="fetch and transform, print the messages instead of publishing; writes nothing",
    )
    validate = sub.add_parser("validate-config", help="validate the configuration and print it (secrets masked)")
    _add_setting_flags(validate)
    health = sub.add_parser("health", help="exit 0 when MQTT is connected and the heartbeat is fresh")
    health.add_argument("--status-file", dest="status_file", default=None)
    return parser


def _settings(args: argparse.Namespace) -> WorkerSettings:
    overrides = {field: getattr(args, field, None) for field, _ in _FLAGS.values()}
    overrides["mqtt_insecure"] = getattr(args, "mqtt_insecure", None)
    return load_settings(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "health":
        return _health(args)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from functions.sync_worker.observability import apply_log_level

    apply_log_level(settings.log_level)
    if args.command == "validate-config":
        return _validate(settings)
    if args.dry_run:
        return _dry_run(settings)
    return _run(settings, once=args.once)


def _health(args: argparse.Namespace) -> int:
    from functions.sync_worker.health import check

    status_file = (
        args.status_file or os.environ.get("C2C_STATUS_FILE") or WorkerSettings.model_fields["status_file"].default
    )
    ok, reason = check(status_file)
    print(reason)
    return 0 if ok else 1


def _check(settings: WorkerSettings) -> str:
    """Everything `run` needs that can be checked without a network: the vendor config, the secrets
    it names, the platform profile. Returns the vendor's name; `ValueError` (one line) otherwise."""
    from functions.sync_worker.source.http_json import load_vendor_config
    from functions.sync_worker.source.plugins import load_adapter_class
    from functions.sync_worker.uplink.profiles import build_profile
    from functions.sync_worker.wiring import check_source_secrets

    if settings.source_adapter:
        load_adapter_class(settings.source_adapter)
        name = settings.source_adapter
    else:
        name = load_vendor_config(settings.source_config).name
    check_source_secrets(settings)
    build_profile(settings)
    return name


def _config_error(exc: Exception) -> int:
    print(f"invalid configuration: {exc}", file=sys.stderr)
    return EXIT_CONFIG


def _validate(settings: WorkerSettings) -> int:
    try:
        vendor = _check(settings)
    except ValueError as exc:  # ConfigError, VendorConfigError, ProfileConfigError
        return _config_error(exc)
    print(json.dumps({"settings": settings.redacted(), "vendor": vendor}, indent=2, default=str))
    return 0


def once_exit_code(record: CycleRecord | None) -> int:
    """`run --once`: 0 only for a cycle that ran, read its station list and failed no station."""
    if record is None or record.station_list_failed or record.stations_failed:
        return 1
    return 0


def _run(settings: WorkerSettings, *, once: bool) -> int:
    from functions.sync_worker.wiring import build_worker

    try:
        _check(settings)
        worker = build_worker(settings)
    except ValueError as exc:  # a vendor or profile config the factories refuse, a missing secret
        return _config_error(exc)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.request_stop())
    code = worker.run(once=once, stations=set(settings.stations) if settings.stations else None)
    if once and code == 0:
        code = once_exit_code(worker.last_record)
    sys.stdout.flush()
    sys.stderr.flush()
    # Station threads blocked in a vendor call would hold the interpreter's exit past the ECS stop
    # timeout; everything worth keeping (cursors, lease, DISCONNECT) is already done.
    os._exit(code)


def _dry_run(settings: WorkerSettings) -> int:
    from functions.sync_worker.cycle import CycleRunner
    from functions.sync_worker.errors import PermanentError
    from functions.sync_worker.store import MemoryState
    from functions.sync_worker.uplink.batch import PublishBatch
    from functions.sync_worker.uplink.profile import OutboundMessage
    from functions.sync_worker.uplink.profiles import build_profile
    from functions.sync_worker.wiring import build_source

    try:
        _check(settings)
        profile = build_profile(settings)
        source = build_source(settings)
    except ValueError as exc:
        return _config_error(exc)

    class PrintPublisher:
        """Prints each message as a JSON line where the uplink would publish it."""

        def new_batch(self) -> PublishBatch:
            return PublishBatch()

        def publish_page(
            self, messages: list[OutboundMessage], batch: PublishBatch
        ) -> list[tuple[OutboundMessage, PermanentError]]:
            refused: list[tuple[OutboundMessage, PermanentError]] = []
            for message in messages:
                try:
                    identity = profile.identity_for(message.station_id)
                    profile.check(message, qos=1, retain=False)
                except PermanentError as exc:
                    refused.append((message, exc))
                    continue
                print(
                    json.dumps(
                        {
                            "topic": profile.topic_for(identity, message),
                            "message_id": message.message_id,
                            "payload": json.loads(message.payload),
                        }
                    ),
                    flush=False,
                )
            return refused

    try:
        try:
            listed = source.list_stations()
        except Exception as exc:  # the vendor's answer, not a bug here: one line, no traceback
            print(f"dry run failed: station list: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        stations = [s for s in listed if not settings.stations or s.station_id in settings.stations]
        runner = CycleRunner(
            source,
            PrintPublisher(),
            MemoryState(),
            concurrency=settings.concurrency,
            page_size=settings.page_size,
            backfill_window_s=settings.backfill_window_s,
        )
        result = runner.run(stations)
        runner.close()
    finally:
        source.close()
    summary = result.record.model_dump(mode="json")
    summary["dry_run_at"] = datetime.now(UTC).isoformat()
    print(json.dumps({"dry_run_summary": summary}), file=sys.stderr)
    return 0 if not result.record.stations_failed else 1
