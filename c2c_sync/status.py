"""Gathering an environment's status: the worker's Redis state and the dead-letter queue.

The Redis side follows functions/common/state.py exactly (key names, Heartbeat, CycleRecord), the
same contract the worker writes and its health check reads. The result is a pydantic model whose
JSON form (`--json`) is the stable interface for scripts; the Rich tables render the same model.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

import redis
from pydantic import BaseModel, ValidationError

from functions.common.state import HEARTBEAT_STALE_AFTER_S, CycleRecord, Heartbeat, StateKeys, as_text


class LeaseStatus(BaseModel):
    holder: str | None
    #: current value of the fencing counter (the token of the latest lease acquisition)
    fencing_token: int | None
    ttl_s: float | None


class HeartbeatStatus(BaseModel):
    present: bool
    stale: bool
    stale_after_s: int = HEARTBEAT_STALE_AFTER_S
    age_s: float | None = None
    at: datetime | None = None
    worker_id: str | None = None
    fencing_token: int | None = None
    mqtt_connected: bool | None = None
    cycle_running: bool | None = None
    mode: str | None = None
    error: str | None = None  # set when the key holds something that is not a Heartbeat


class CyclesStatus(BaseModel):
    recorded: int  # entries in the history list
    last: list[CycleRecord]  # newest first
    unreadable: int  # entries that are not CycleRecord JSON
    errors_by_class: dict[str, int]  # summed over `last`
    readings_published: int  # summed over `last`


class StationLag(BaseModel):
    station: str
    cursor: datetime
    lag_s: float


class CursorLagStatus(BaseModel):
    stations: int
    newest_lag_s: float | None
    median_lag_s: float | None
    oldest_lag_s: float | None
    worst: list[StationLag]  # largest lag first
    unreadable: list[str]  # stations whose cursor is not an ISO-8601 time


class QueueStatus(BaseModel):
    dlq_url: str
    dlq_depth: int
    start_queue_url: str | None = None
    start_queue_depth: int | None = None


class EnvironmentStatus(BaseModel):
    env: str
    generated_at: datetime
    redis: str
    lease: LeaseStatus
    heartbeat: HeartbeatStatus
    cycles: CyclesStatus
    cursors: CursorLagStatus
    queues: QueueStatus


def read_lease(client: redis.Redis, keys: StateKeys) -> LeaseStatus:
    holder = client.get(keys.lease)
    fence = client.get(keys.fencing_counter)
    ttl_ms = client.pttl(keys.lease) if holder is not None else None
    return LeaseStatus(
        holder=holder,
        fencing_token=int(fence) if fence is not None else None,
        ttl_s=ttl_ms / 1000 if ttl_ms is not None and ttl_ms >= 0 else None,
    )


def read_heartbeat(client: redis.Redis, keys: StateKeys, now: datetime) -> HeartbeatStatus:
    raw = client.get(keys.heartbeat)
    if raw is None:
        # The key has a TTL: a worker that stopped beating long enough leaves nothing behind.
        return HeartbeatStatus(present=False, stale=True)
    try:
        beat = Heartbeat.model_validate_json(raw)
    except ValidationError as exc:
        return HeartbeatStatus(present=True, stale=True, error=f"not a Heartbeat: {exc.error_count()} error(s)")
    age = (now - beat.at).total_seconds()
    return HeartbeatStatus(
        present=True,
        stale=age > HEARTBEAT_STALE_AFTER_S,
        age_s=round(age, 3),
        at=beat.at,
        worker_id=beat.worker_id,
        fencing_token=beat.fencing_token,
        mqtt_connected=beat.mqtt_connected,
        cycle_running=beat.cycle_running,
        mode=beat.mode,
    )


def read_cycles(client: redis.Redis, keys: StateKeys, limit: int) -> CyclesStatus:
    recorded = client.llen(keys.history)
    records: list[CycleRecord] = []
    unreadable = 0
    newest = client.lrange(keys.history, 0, limit - 1) if limit > 0 else []
    for raw in newest:
        try:
            records.append(CycleRecord.model_validate_json(raw))
        except ValidationError:
            unreadable += 1
    errors: dict[str, int] = {}
    for record in records:
        for error_class, count in record.errors_by_class.items():
            errors[error_class] = errors.get(error_class, 0) + count
    return CyclesStatus(
        recorded=recorded,
        last=records,
        unreadable=unreadable,
        errors_by_class=dict(sorted(errors.items())),
        readings_published=sum(r.readings_published for r in records),
    )


def cursor_lag(cursors: dict[str, str], now: datetime, worst: int) -> CursorLagStatus:
    """Lag = now - cursor per station; the worst `worst` stations are listed, largest lag first."""
    lags: list[StationLag] = []
    unreadable: list[str] = []
    for station, value in cursors.items():
        try:
            cursor = datetime.fromisoformat(value)
        except ValueError:
            unreadable.append(station)
            continue
        if cursor.tzinfo is None:  # the contract says UTC; a naive value is read as UTC rather than dropped
            cursor = cursor.replace(tzinfo=UTC)
        lags.append(StationLag(station=station, cursor=cursor, lag_s=round((now - cursor).total_seconds(), 3)))
    lags.sort(key=lambda lag: (-lag.lag_s, lag.station))
    values = [lag.lag_s for lag in lags]
    return CursorLagStatus(
        stations=len(lags),
        newest_lag_s=values[-1] if values else None,
        median_lag_s=round(statistics.median(values), 3) if values else None,
        oldest_lag_s=values[0] if values else None,
        worst=lags[:worst],
        unreadable=sorted(unreadable),
    )


def queue_depth(sqs, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def gather(
    env: str,
    client: redis.Redis,
    redis_description: str,
    sqs,
    dlq_url: str,
    start_queue_url: str | None,
    *,
    now: datetime | None = None,
    cycles: int = 5,
    worst: int = 5,
) -> EnvironmentStatus:
    now = now or datetime.now(UTC)
    keys = StateKeys.for_env(env)
    return EnvironmentStatus(
        env=env,
        generated_at=now,
        redis=redis_description,
        lease=read_lease(client, keys),
        heartbeat=read_heartbeat(client, keys, now),
        cycles=read_cycles(client, keys, cycles),
        cursors=cursor_lag({as_text(k): as_text(v) for k, v in client.hgetall(keys.cursors).items()}, now, worst),
        queues=QueueStatus(
            dlq_url=dlq_url,
            dlq_depth=queue_depth(sqs, dlq_url),
            start_queue_url=start_queue_url,
            start_queue_depth=queue_depth(sqs, start_queue_url) if start_queue_url else None,
        ),
    )
