"""One sync cycle: every station fetched since its cursor, transformed, published, cursor advanced.

The cursor of a station moves page by page, and only after every PUBACK of that page arrived: a
crash, a broker outage or a lost lease leaves the cursor at the last fully acknowledged page, and
the next cycle republishes the rest (duplicates are possible and carry the same message id; loss
is not). Errors are classified in exactly one place, `_run_station`, by their class.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from redis.exceptions import RedisError

from functions.common.state import CycleRecord
from functions.sync_worker.errors import ErrorClass, PermanentError, SyncError, ThrottledError
from functions.sync_worker.observability import logger
from functions.sync_worker.source.base import Reading, SourceAdapter, Station
from functions.sync_worker.store import LeaseLost
from functions.sync_worker.transform import to_message
from functions.sync_worker.uplink.batch import PublishBatch
from functions.sync_worker.uplink.profile import OutboundMessage


class Publisher(Protocol):
    """What the runner needs from the uplink (`MqttUplink`, or the dry-run printer)."""

    def new_batch(self) -> PublishBatch: ...

    def publish_page(
        self, messages: list[OutboundMessage], batch: PublishBatch
    ) -> list[tuple[OutboundMessage, PermanentError]]:
        """Queue a page's messages into `batch`; return those the platform refuses (not sent)."""
        ...


class CursorStore(Protocol):
    def cursors(self) -> dict[str, datetime]: ...

    def advance_cursor(self, station_id: str, ts: datetime) -> None: ...


class Abandoned(Exception):
    """The station was stopped between pages because the worker is shutting down."""


@dataclass
class StationOutcome:
    station_id: str
    published: int = 0
    skipped: int = 0
    #: Readings sent whose cursor did not move (no PUBACK, or the cursor write failed): the next
    #: cycle sends them again, so each may reach the platform twice.
    unconfirmed: int = 0
    error: ErrorClass | None = None
    abandoned: bool = False


@dataclass
class CycleResult:
    record: CycleRecord
    readings_skipped: int
    outcomes: list[StationOutcome]


class ThrottleGate:
    """Shared back-off after a 429: every station waits until the vendor's Retry-After has passed."""

    DEFAULT_RETRY_AFTER_S = 1.0
    MAX_RETRY_AFTER_S = 60.0

    def __init__(self, stop: threading.Event) -> None:
        self._resume_at = 0.0
        self._lock = threading.Lock()
        self._stop = stop

    def hit(self, retry_after_s: float | None) -> float:
        wait = min(self.MAX_RETRY_AFTER_S, retry_after_s if retry_after_s is not None else self.DEFAULT_RETRY_AFTER_S)
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + wait)
        return wait

    def wait(self) -> None:
        while not self._stop.is_set():
            remaining = self._resume_at - time.monotonic()
            if remaining <= 0:
                return
            self._stop.wait(remaining)


class CycleRunner:
    def __init__(
        self,
        source: SourceAdapter,
        publisher: Publisher,
        cursors: CursorStore,
        *,
        concurrency: int = 32,
        page_size: int = 500,
        backfill_window_s: float = 86_400.0,
        puback_timeout_s: float = 15.0,
        lease_held: Callable[[], bool] = lambda: True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.publisher = publisher
        self.cursor_store = cursors
        self.page_size = page_size
        self.backfill = timedelta(seconds=backfill_window_s)
        self.puback_timeout_s = puback_timeout_s
        self.lease_held = lease_held
        self.now = now
        self.stop = threading.Event()
        self._throttle = ThrottleGate(self.stop)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="station")

    def run(
        self, stations: list[Station], *, signal_id: str | None = None, drain_deadline_s: float = 20.0
    ) -> CycleResult:
        """Sync `stations`; returns when all are done, or, once `stop` is set, within `drain_deadline_s`."""
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        until = self.now()
        cursors = self.cursor_store.cursors()
        futures: dict[Future[StationOutcome], str] = {
            self._pool.submit(self._run_station, st, cursors.get(st.station_id), until): st.station_id
            for st in stations
        }
        outcomes = self._collect(futures, drain_deadline_s)
        finished_at = datetime.now(UTC)
        errors = Counter(o.error.value for o in outcomes if o.error is not None)
        aborted = self.stop.is_set() or any(o.abandoned for o in outcomes) or len(outcomes) < len(stations)
        record = CycleRecord(
            signal_id=signal_id,
            started_at=started_at,
            finished_at=finished_at,
            duration_ms=(time.monotonic() - t0) * 1000,
            stations_total=len(stations),
            stations_synced=sum(1 for o in outcomes if o.error is None and not o.abandoned),
            stations_failed=sum(1 for o in outcomes if o.error is not None),
            readings_published=sum(o.published for o in outcomes),
            duplicates_possible=sum(o.unconfirmed for o in outcomes),
            errors_by_class=dict(errors),
            aborted=aborted,
        )
        return CycleResult(record, sum(o.skipped for o in outcomes), outcomes)

    def _collect(self, futures: dict[Future[StationOutcome], str], drain_deadline_s: float) -> list[StationOutcome]:
        # A done-callback queue instead of `concurrent.futures.wait`: waiting on 10,000 futures
        # repeatedly would cost O(N) per completed station.
        finished: queue.SimpleQueue[Future[StationOutcome]] = queue.SimpleQueue()
        for f in futures:
            f.add_done_callback(finished.put)
        outcomes: list[StationOutcome] = []
        remaining = len(futures)
        drain_deadline: float | None = None
        while remaining:
            # A lost lease ends the cycle like a shutdown: no station may start without it.
            if drain_deadline is None and (self.stop.is_set() or not self.lease_held()):
                drain_deadline = time.monotonic() + drain_deadline_s
                for f in futures:
                    f.cancel()  # stations not started yet are abandoned outright
            timeout = 0.2 if drain_deadline is None else min(0.2, drain_deadline - time.monotonic())
            if timeout <= 0:
                running = [sid for f, sid in futures.items() if not f.done()]
                logger.warning(
                    "shutdown deadline reached; abandoning stations still running",
                    extra={"stations": running[:20], "count": len(running)},
                )
                break
            try:
                f = finished.get(timeout=timeout)
            except queue.Empty:
                continue
            remaining -= 1
            outcomes.append(StationOutcome(futures[f], abandoned=True) if f.cancelled() else f.result())
        return outcomes

    # -- per station: the one place errors are classified -----------------------------------

    def _run_station(self, station: Station, cursor: datetime | None, until: datetime) -> StationOutcome:
        outcome = StationOutcome(station.station_id)
        throttled_once = False
        while True:
            try:
                self._sync_station(station, cursor, until, outcome)
                return outcome
            except Abandoned:
                outcome.abandoned = True
                return outcome
            except LeaseLost as exc:
                logger.error(
                    "lease lost mid-cycle; station stopped",
                    extra={"station_id": station.station_id, "reason": str(exc)},
                )
                outcome.abandoned = True
                return outcome
            except ThrottledError as exc:
                waited = self._throttle.hit(exc.retry_after_s)
                if not throttled_once and not self.stop.is_set():
                    throttled_once = True
                    logger.info(
                        "throttled by the vendor; backing off",
                        extra={"station_id": station.station_id, "retry_after_s": waited},
                    )
                    continue
                return self._failed(outcome, ErrorClass.THROTTLED, exc)
            # Transient, permanent and auth: the station is done for this cycle. An AuthError arrives
            # after its renewal was already tried where the credential lives (the source transport
            # refreshes once on a 401; the MQTT supervisor reconnects with a fresh ConnectionSpec).
            except SyncError as exc:
                return self._failed(outcome, exc.error_class, exc)
            except RedisError as exc:  # the cursor could not be written: retried next cycle
                return self._failed(outcome, ErrorClass.TRANSIENT, exc)
            except Exception as exc:
                logger.exception(
                    "unexpected error; station treated as transient failure", extra={"station_id": station.station_id}
                )
                return self._failed(outcome, ErrorClass.TRANSIENT, exc)

    def _failed(self, outcome: StationOutcome, error_class: ErrorClass, exc: BaseException) -> StationOutcome:
        outcome.error = error_class
        log = logger.error if error_class in (ErrorClass.PERMANENT, ErrorClass.AUTH) else logger.warning
        log(
            "station failed",
            extra={
                "station_id": outcome.station_id,
                "error_class": error_class.value,
                "error": str(exc),
                "published": outcome.published,
            },
        )
        return outcome

    def _sync_station(
        self, station: Station, cursor: datetime | None, until: datetime, outcome: StationOutcome
    ) -> None:
        floor = until - self.backfill
        since = max(cursor, floor) if cursor is not None else floor
        while True:
            if self.stop.is_set():
                raise Abandoned()
            if not self.lease_held():
                raise LeaseLost("lease not held")
            self._throttle.wait()
            page = self.source.fetch_readings(station, since, until, self.page_size)
            # A `ReadingBatch` says how far the vendor's items went (skipped ones included) and
            # whether more follow; a plain list is paged by its length.
            outcome.skipped += getattr(page, "skipped", 0)
            high_water = getattr(page, "high_water", None) or (page[-1].ts if page else None)
            has_more = getattr(page, "has_more", len(page) >= self.page_size)
            sent = self._publish_page(station, page, outcome) if page else 0
            if high_water is None:
                return
            if high_water > since:
                try:
                    self.cursor_store.advance_cursor(station.station_id, high_water)
                except Exception:
                    # Acknowledged by the broker, but the cursor stays: the next cycle sends them again.
                    outcome.unconfirmed += sent
                    raise
            if not has_more or high_water <= since:
                return
            since = high_water

    def _publish_page(self, station: Station, page: list[Reading], outcome: StationOutcome) -> int:
        """Send a page and wait for all its PUBACKs (returns how many were sent and acknowledged);
        the caller moves the cursor only afterwards."""
        messages: list[OutboundMessage] = []
        for reading in page:
            try:
                messages.append(to_message(reading))
            except PermanentError as exc:  # this reading only: skip it, keep the rest
                self._skip(outcome, reading.message_id, exc)
        batch = self.publisher.new_batch()
        # Raises (transient) with nothing of the page queued when the uplink's queue stays full.
        refused = self.publisher.publish_page(messages, batch)
        for message, refusal in refused:
            self._skip(outcome, message.message_id, refusal)
        sent = len(messages) - len(refused)
        try:
            batch.wait(self.puback_timeout_s)
        except SyncError:
            outcome.unconfirmed += sent
            raise
        outcome.published += sent
        return sent

    @staticmethod
    def _skip(outcome: StationOutcome, message_id: str, exc: PermanentError) -> None:
        outcome.skipped += 1
        logger.warning(
            "reading skipped", extra={"station_id": outcome.station_id, "message_id": message_id, "error": str(exc)}
        )

    def close(self) -> None:
        self.stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
