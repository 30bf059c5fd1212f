"""`c2c-sync demo`: the whole system on this machine, end to end, in about a minute.

    services   redis-server, mosquitto, moto's server (SNS/SQS/KMS), the vendor simulator (or a
               vendor mock with `--vendor`, read through its shipped definition: vendors.py)
    topology   the messaging stack's synthesized template, created in moto (topic → queue → DLQ)
    worker     `python -m functions.sync_worker run`, C2C_* environment as the sync-service stack sets it
    phase 1    trigger Lambda handler (scheduled event) → SNS → SQS → worker → MQTT, `cycles` times
    phase 2    worker restarted on C2C_SIGNAL_URL=redis; trigger with REDIS_HOST → Redis pub/sub → worker
    verdict    readings expected from the final cursors vs. what an independent subscriber received

The simulator's clock starts `BASELINE_AGE` in the past and runs `speed` times faster than real
time, so each cycle finds `interval × speed / 60` new readings per station; every cursor is set to
that start before the worker runs (see ledger.py for why this makes "lost" exact). A vendor mock
has its own ground truth and verdict (vendors.py).

This module is the orchestration only: it starts the local services (local.py), tells a
`DemoObserver` what happens (display.py shows it live) and returns a `DemoResult` (summary.py renders
it); command.py puts them together.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, stop_after_delay, wait_fixed

from c2c_sync.demo import blueprint as blueprints
from c2c_sync.demo import topology
from c2c_sync.demo.ledger import Reconciliation, reconcile
from c2c_sync.demo.lifecycle import Interrupted, Teardown
from c2c_sync.demo.local import SIMULATOR_API_KEY, LocalServices, connect_state, moto_clients, start_services
from c2c_sync.demo.observer import DemoObserver
from c2c_sync.demo.options import DemoOptions
from c2c_sync.demo.result import CycleOutcome, DemoResult
from c2c_sync.demo.subscriber import Subscriber, subscription_topic
from c2c_sync.demo.trigger import LocalTrigger, RedisPublishTarget
from c2c_sync.demo.worker_process import WorkerProcess
from functions.common.signal import REDIS_SIGNAL_CHANNEL
from functions.common.state import CycleRecord, Heartbeat, StateKeys, as_text

#: The simulator's reading cadence (its default); the ledger's grid.
READING_INTERVAL_S = 60


class DemoFailed(RuntimeError):
    """The demo could not run to its end; the message says which part failed and where its log is."""


@dataclass
class _Context:
    options: DemoOptions
    display: DemoObserver
    workdir: Path
    env: str
    teardown: Teardown
    services: LocalServices
    state: redis.Redis
    keys: StateKeys
    worker_env: dict[str, str] = field(default_factory=dict)
    stations: list[str] = field(default_factory=list)
    worker: WorkerProcess | None = None


def run_demo(options: DemoOptions, display: DemoObserver) -> DemoResult:
    """Run the demo, telling `display` what happens; returns its result (see `DemoResult.exit_code`).
    Stops everything it started, and removes its log directory after a success unless asked to keep it."""
    options.validate()
    started = time.monotonic()
    env = f"demo-{secrets.token_hex(3)}"
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix=f"c2c-{env}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    teardown = Teardown(report=display.warn).install()
    result = DemoResult(
        env=env, stations=options.stations, identities=1, client_id=f"c2c-sync-{env}", vendor=options.vendor
    )
    try:
        try:
            _run(options, display, workdir, env, teardown, result)
        except (DemoFailed, TimeoutError, RuntimeError) as exc:
            result.aborted = str(exc)
        except KeyboardInterrupt:
            result.aborted = "interrupted (Ctrl-C)"
        except Interrupted as exc:
            result.aborted = f"interrupted ({exc})"
        finally:
            display.note("stopping everything the demo started …")
            teardown.close()
    finally:
        teardown.close()
    result.wall_time_s = time.monotonic() - started
    if result.exit_code == 0 and not options.keep_logs and options.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        result.logs_dir = workdir
    return result


def _run(
    opts: DemoOptions, display: DemoObserver, workdir: Path, env: str, teardown: Teardown, result: DemoResult
) -> None:
    display.phase("c2c-sync demo: local services")
    synth_log = workdir / "synth.log"
    synth = blueprints.start(opts.config_env, env, synth_log)

    def stop_synthesis() -> None:
        if synth.poll() is None:
            synth.kill()

    teardown.push("synthesis", stop_synthesis)
    services = start_services(opts, display, workdir, teardown)
    keys = StateKeys.for_env(env)
    state = connect_state(services, keys, teardown)
    ctx = _Context(
        options=opts,
        display=display,
        workdir=workdir,
        env=env,
        teardown=teardown,
        services=services,
        state=state,
        keys=keys,
    )

    blueprint = blueprints.collect(synth, synth_log)
    moto_client = moto_clients(services.moto.url)
    messaging = topology.deploy(blueprint.messaging_template, moto_client, f"c2c-{ctx.env}")
    display.step(
        f"messaging stack C2C-{ctx.env}-Messaging from its synthesized template (config "
        f"{opts.config_env}, worker mode {blueprint.worker_mode})"
    )
    display.note(messaging.describe())

    ctx.stations = _list_stations(ctx)
    result.stations = len(ctx.stations)
    _seed_cursors(ctx)
    ctx.worker_env = _worker_environment(ctx, blueprint.worker_environment)
    result.identities = _identities(ctx)

    topic = subscription_topic(_topic_template(), ctx.env)
    subscriber = Subscriber(
        services.mqtt_url,
        topic,
        f"c2c-demo-subscriber-{ctx.env}",
        username=opts.mqtt_username,
        password=opts.mqtt_password,
        drop_first_of=opts.drop_first_reading_of,
    ).start()
    ctx.teardown.push("subscriber", subscriber.stop)
    display.step(f"independent subscriber on {topic}")
    if opts.drop_first_reading_of:
        display.warn(f"TEST ONLY: the subscriber will ignore the first reading of {opts.drop_first_reading_of}")

    trigger_log = ctx.workdir / "trigger.log"
    with LocalTrigger(
        env=ctx.env,
        topic_arn=messaging.topic_arn,
        schedule_command=blueprint.schedule_command,
        aws_endpoint=services.moto.url,
        log_path=trigger_log,
    ) as trigger:
        display.phase("trigger → SNS → SQS → worker → MQTT")
        _start_worker(ctx, result, signal_url=messaging.queue_url, name="worker-sqs")
        _run_cycles(ctx, subscriber, result, opts.cycles, "SQS", trigger.fire_schedule, first_number=1)
        sqs = moto_client("sqs")
        result.start_queue_left = _queue_depth(sqs, messaging.queue_url)
        result.dlq_depth = _queue_depth(sqs, messaging.dlq_url)
        _stop_worker(ctx)

        if opts.redis_cycles:
            display.phase("trigger → Redis pub/sub → worker → MQTT")
            trigger.configure(_redis_publish_target(ctx, moto_client))
            subscribers_before = _channel_subscribers(ctx)
            _start_worker(ctx, result, signal_url="redis", name="worker-redis")
            _wait(
                lambda: _channel_subscribers(ctx) > subscribers_before,
                30,
                ctx,
                "the worker's subscription to the Redis signal channel",
            )
            _run_cycles(
                ctx,
                subscriber,
                result,
                opts.redis_cycles,
                "Redis",
                trigger.fire_schedule,
                first_number=len(result.cycles) + 1,
            )
            _stop_worker(ctx)

    _reconcile(ctx, subscriber, result)


def _list_stations(ctx: _Context) -> list[str]:
    """The station list through the worker's own vendor adapter (what the worker will sync)."""
    from functions.sync_worker.source.http_json import load_source

    mock, simulator = ctx.services.mock, ctx.services.simulator
    if mock is not None:
        source = load_source(mock.definition_path, mock.url, mock.secrets(), pool_size=2)
    else:
        assert simulator is not None
        source = load_source("simulator", simulator.url, lambda name: SIMULATOR_API_KEY, pool_size=2)
    try:
        # The simulator's injected faults also hit this listing.
        for attempt in Retrying(stop=stop_after_attempt(5), wait=wait_fixed(0.5), reraise=True):
            with attempt:
                return [s.station_id for s in source.list_stations()]
    finally:
        source.close()
    raise AssertionError("unreachable")


def _seed_cursors(ctx: _Context) -> None:
    from functions.sync_worker.store import format_cursor

    if ctx.services.mock is not None:
        ctx.display.step(ctx.services.mock.seed_cursors(ctx.state, ctx.keys, ctx.stations))
        return
    value = format_cursor(ctx.services.baseline)
    ctx.state.hset(ctx.keys.cursors, mapping={s: value for s in ctx.stations})
    ctx.display.step(f"{len(ctx.stations)} station cursors set to the simulator's start {value}")


def _topic_template() -> str:
    from functions.sync_worker.settings import WorkerSettings

    return WorkerSettings.model_fields["mqtt_topic"].default


def _worker_environment(ctx: _Context, deployed: dict[str, str]) -> dict[str, str]:
    """The sync-service stack's variables, with this machine's endpoints in place of AWS ones."""
    opts = ctx.options
    env = dict(deployed)
    env.pop("C2C_MQTT_USERNAME", None)  # the deployed identity's username means nothing to a local broker
    env.update(
        {
            "C2C_ENV": ctx.env,
            "C2C_MQTT_URL": ctx.services.mqtt_url,
            "C2C_MQTT_CLIENT_ID": f"c2c-sync-{ctx.env}",
            "C2C_REDIS_URL": ctx.services.redis_url,
            "C2C_STATUS_FILE": str(ctx.workdir / "worker-status.json"),
            "AWS_REGION": topology.REGION,
            "AWS_DEFAULT_REGION": topology.REGION,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_ENDPOINT_URL": ctx.services.moto.url,
        }
    )
    if ctx.services.mock is not None:
        env.update(ctx.services.mock.worker_environment())
    else:
        assert ctx.services.simulator is not None
        env.update({"C2C_SOURCE_URL": ctx.services.simulator.url, "C2C_SOURCE_API_KEY": SIMULATOR_API_KEY})
    if ctx.services.redis_password:
        env["C2C_REDIS_PASSWORD"] = ctx.services.redis_password
    if opts.mqtt_username:
        env["C2C_MQTT_USERNAME"] = opts.mqtt_username
    if opts.mqtt_password:
        env["C2C_MQTT_PASSWORD"] = opts.mqtt_password
    host = urlsplit(ctx.services.mqtt_url).hostname or ""
    if urlsplit(ctx.services.mqtt_url).scheme == "mqtt" and host not in ("127.0.0.1", "localhost", "::1"):
        env["C2C_MQTT_INSECURE"] = "true"  # plaintext to a non-local broker: the operator asked for it
    return env


def _identities(ctx: _Context) -> int:
    """Distinct MQTT identities the worker's platform profile uses for these stations."""
    from functions.sync_worker.settings import WorkerSettings
    from functions.sync_worker.uplink.profiles import build_profile

    env = ctx.worker_env
    settings = WorkerSettings(
        env=ctx.env,
        mqtt_url=ctx.services.mqtt_url,
        mqtt_client_id=env["C2C_MQTT_CLIENT_ID"],
        platform_profile=env.get("C2C_PLATFORM_PROFILE", "generic"),
        mqtt_insecure=env.get("C2C_MQTT_INSECURE") == "true",
    )
    profile = build_profile(settings)
    return len({profile.identity_for(s) for s in ctx.stations})


def _redis_publish_target(ctx: _Context, moto_client: Callable[[str], Any]) -> RedisPublishTarget:
    """The trigger's Redis settings; a password goes through Secrets Manager (in moto), as deployed."""
    parts = urlsplit(ctx.services.redis_url)
    secret_arn = None
    if ctx.services.redis_password:
        secret_arn = moto_client("secretsmanager").create_secret(
            Name=f"c2c-sync/{ctx.env}/redis-auth", SecretString=ctx.services.redis_password
        )["ARN"]
    return RedisPublishTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        tls=parts.scheme == "rediss",
        auth_secret_arn=secret_arn,
    )


def _channel_subscribers(ctx: _Context) -> int:
    return int(dict(ctx.state.pubsub_numsub(REDIS_SIGNAL_CHANNEL)).get(REDIS_SIGNAL_CHANNEL, 0))


def _queue_depth(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


# -- the worker --------------------------------------------------------------------------------


def _start_worker(ctx: _Context, result: DemoResult, *, signal_url: str, name: str) -> None:
    env = dict(ctx.worker_env, C2C_SIGNAL_URL=signal_url)
    ctx.worker = WorkerProcess(env, ctx.workdir / f"{name}.log").start()
    worker = ctx.worker
    ctx.teardown.push(name, worker.stop)
    result.worker_starts += 1

    def connected() -> bool:
        raw = ctx.state.get(ctx.keys.heartbeat)
        return raw is not None and Heartbeat.model_validate_json(raw).mqtt_connected

    _wait(connected, 60, ctx, "the worker's first heartbeat with MQTT connected")
    transport = "SQS long-poll" if signal_url != "redis" else "Redis pub/sub"
    ctx.display.step(
        f"worker process pid {worker.pid}: `python -m functions.sync_worker run`, "
        f"signals from {transport}, MQTT client id {env['C2C_MQTT_CLIENT_ID']}"
    )


def _stop_worker(ctx: _Context) -> None:
    worker = ctx.worker
    if worker is None:
        return
    code = worker.stop()
    ctx.worker = None
    if code not in (0, None):
        raise DemoFailed(f"the worker exited with code {code} on SIGTERM; log {worker.log_path}:\n{worker.log_tail()}")
    ctx.display.step("worker stopped (SIGTERM: PUBACKs drained, DISCONNECT sent, lease released)")


_T = TypeVar("_T")


def _poll(probe: Callable[[], _T], done: Callable[[_T], bool], timeout: float, interval: float) -> _T:
    """Call `probe` every `interval` s until `done(result)` or `timeout` s have passed; the last result
    either way. An exception from `probe` (a worker that died) ends the polling at once."""
    return Retrying(
        retry=retry_if_result(lambda result: not done(result)),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry_error_callback=_last_result,
    )(probe)


def _last_result(state: RetryCallState) -> Any:
    """What the last attempt returned (tenacity calls this once polling stops without success)."""
    if state.outcome is None:
        raise RuntimeError("polling stopped before its first attempt")
    return state.outcome.result()


def _wait(predicate: Callable[[], bool], timeout: float, ctx: _Context, what: str) -> None:
    def ready() -> bool:
        if predicate():
            return True
        _check_worker(ctx)
        return False

    if not _poll(ready, bool, timeout, 0.1):
        raise DemoFailed(f"timed out after {timeout:g} s waiting for {what}")


def _check_worker(ctx: _Context) -> None:
    worker = ctx.worker
    if worker is not None and worker.exit_code is not None:
        raise DemoFailed(f"the worker exited with code {worker.exit_code}; log {worker.log_path}:\n{worker.log_tail()}")


# -- cycles --------------------------------------------------------------------------------------


def _run_cycles(
    ctx: _Context,
    sub: Subscriber,
    result: DemoResult,
    count: int,
    via: str,
    fire: Callable[[], str],
    *,
    first_number: int,
) -> None:
    """Fire a scheduled invocation every `interval_s` (or as soon as the previous cycle ended, if later)."""
    phase_start = time.monotonic()
    for i in range(count):
        due = phase_start + i * ctx.options.interval_s
        while time.monotonic() < due:
            _check_worker(ctx)
            time.sleep(min(0.1, max(0.0, due - time.monotonic())))
        result.cycles.append(_run_cycle(ctx, sub, first_number + i, via, fire))


def _run_cycle(ctx: _Context, sub: Subscriber, number: int, via: str, fire: Callable[[], str]) -> CycleOutcome:
    display = ctx.display
    cursors_before = ctx.state.hgetall(ctx.keys.cursors)
    received_before = sub.total()
    display.cycle_started(number, via, len(ctx.stations))
    signal_id = fire()

    def finished() -> CycleRecord | None:
        record = _finished_record(ctx, signal_id)
        if record is None:
            _check_worker(ctx)
            cursors = ctx.state.hgetall(ctx.keys.cursors)
            moved = sum(1 for s, v in cursors.items() if v != cursors_before.get(s))
            display.cycle_progress(number, moved, sub.total() - received_before)
        return record

    record = _poll(finished, lambda found: found is not None, ctx.options.cycle_timeout_s, 0.2)
    if record is None:
        raise DemoFailed(
            f"cycle {number} (signal {signal_id}) did not finish within "
            f"{ctx.options.cycle_timeout_s:g} s; worker log {ctx.worker.log_path if ctx.worker else '-'}"
        )
    # PUBACKs came before the record; deliveries to the subscriber may trail them by a moment.
    _poll(sub.total, lambda total: total - received_before >= record.readings_published, 2.0, 0.05)
    received = sub.total() - received_before
    display.cycle_finished(number, record, received)
    return CycleOutcome(number, via, signal_id, record, received)


def _finished_record(ctx: _Context, signal_id: str) -> CycleRecord | None:
    for raw in ctx.state.lrange(ctx.keys.history, 0, 9):
        record = CycleRecord.model_validate_json(raw)
        if record.signal_id == signal_id:
            return record
    return None


# -- verdict ---------------------------------------------------------------------------------------


def _reconcile(ctx: _Context, sub: Subscriber, result: DemoResult) -> None:
    from functions.sync_worker.store import parse_cursor

    mock, simulator = ctx.services.mock, ctx.services.simulator
    final = {as_text(s): parse_cursor(as_text(v)) for s, v in ctx.state.hgetall(ctx.keys.cursors).items()}

    def reconciled() -> Reconciliation:
        if mock is not None:
            return mock.reconcile(ctx.state, ctx.keys, sub.received_ids())
        return reconcile(ctx.services.baseline, final, sub.received_ids(), READING_INTERVAL_S)

    result.reconciliation = _poll(reconciled, lambda rec: rec.ok, 5.0, 0.2)
    result.received_total = sub.total()
    result.duplicates = sub.duplicates()
    if mock is not None:
        usage = mock.usage()
        result.vendor_requests = usage.requests
        result.vendor_refusals = usage.refusals
        result.vendor_detail = usage.detail
    else:
        assert simulator is not None
        stats = simulator.stats()
        result.vendor_requests = int(stats["requests_total"])
        result.vendor_connections = int(stats["connections_total"])
        result.vendor_faults = {str(k): int(v) for k, v in stats["faults"].items()}
    if ctx.services.broker is not None:
        result.broker_connections = ctx.services.broker.connections_from(result.client_id)
    for name in ("worker-sqs", "worker-redis"):
        log = ctx.workdir / f"{name}.log"
        if log.exists():
            result.worker_reported_connections += WorkerProcess({}, log).reported_connections()
