"""One sync cycle: every station and reading endpoint fetched since its cursor, transformed,
published, cursor advanced.

The window of one (station, endpoint) is `(cursor - lookback, now - settle]`. Its cursor moves only
after every PUBACK of what was sent, and only to a time up to which the vendor's answer is known
complete (`ReadingBatch.complete_through`), never past an item the vendor listed without a value
while that item is inside the lookback: a crash, a broker outage or a lost lease leaves the cursor
where everything before it is acknowledged, and a late value is read when it arrives. Readings
that may have been sent before (inside the lookback, or past a held cursor) are compared with the
digest remembered for their id and sent again only when their values changed, so re-reading does
not flood. Duplicates are possible and carry the same message id; loss is not. Errors are
classified in exactly one place, `_classify`, by their class.

A window's last page is handed to the `Settler` once published: it waits for the PUBACKs and then
writes the cursor, while the lane goes on to its next station. Its accounting goes into outcomes of
its own (`_PageSettlement`), merged with the lanes' per station when the cycle ends.
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from redis.exceptions import RedisError

from functions.common.state import CycleRecord
from functions.sync_worker.errors import ErrorClass, PermanentError, SyncError, ThrottledError
from functions.sync_worker.observability import logger
from functions.sync_worker.settlement import Settler
from functions.sync_worker.source.base import (
    DEFAULT_ENDPOINT,
    TICK,
    EndpointPlan,
    Reading,
    ReadingBatch,
    SourceAdapter,
    Station,
)
from functions.sync_worker.store import CursorAdvance, LeaseLost
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
    """Cursors per (station, endpoint) and the digests of what was published (`StateStore`)."""

    def cursors(self, endpoint: str = DEFAULT_ENDPOINT) -> dict[str, datetime]: ...

    def published_through(self, endpoint: str = DEFAULT_ENDPOINT) -> dict[str, datetime]: ...

    def advance_cursors(self, advances: Sequence[CursorAdvance]) -> list[bool | Exception]: ...

    def seen_digests(self, message_ids: list[str]) -> list[str | None]: ...

    def take_call(self, budgets: Sequence[tuple[str, int, float]]) -> bool: ...


#: Digests outlive the re-read of their reading: a reading is read again while it is inside the
#: lookback of a cursor that may itself be held back up to a lookback, so 2 x lookback plus margin.
DIGEST_TTL_MARGIN_S = 3600


def digest_ttl_s(plan: EndpointPlan) -> int:
    return int(2 * plan.lookback_s + plan.settle_s) + DIGEST_TTL_MARGIN_S


def payload_digest(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


@dataclass
class _Window:
    """One (station, endpoint) window in progress: what the cursor may move to, and why not further."""

    plan: EndpointPlan
    cursor: datetime | None
    #: Readings at or before this may have been published by an earlier cycle: compare digests.
    maybe_sent_through: datetime | None
    since: datetime
    until: datetime
    complete_through: datetime | None = None
    earliest_pending: datetime | None = None

    def cursor_target(self) -> datetime | None:
        target = self.complete_through
        if target is not None and self.earliest_pending is not None and self.earliest_pending <= target:
            target = self.earliest_pending - TICK
        return target


#: Per endpoint name: (cursors, published-through) by station id, read once per cycle.
_CursorSnapshot = dict[str, tuple[dict[str, datetime], dict[str, datetime]]]


def _merge(outcomes: list[StationOutcome]) -> list[StationOutcome]:
    """One outcome per station: a station with batched and unbatched endpoints has one per unit."""
    merged: dict[str, StationOutcome] = {}
    for o in outcomes:
        into = merged.get(o.station_id)
        if into is None:
            merged[o.station_id] = o
            continue
        into.published += o.published
        into.skipped += o.skipped
        into.unchanged += o.unchanged
        into.never_reported += o.never_reported
        into.unconfirmed += o.unconfirmed
        into.error = into.error or o.error
        into.deferred = into.deferred or o.deferred
        into.abandoned = into.abandoned or o.abandoned
    return list(merged.values())


def _lag_key(station: Station, cursors: _CursorSnapshot) -> tuple[int, datetime]:
    """Stations without a cursor first, then by their oldest cursor over the endpoints."""
    found = [ends[station.station_id] for ends, _ in cursors.values() if station.station_id in ends]
    return (1, min(found)) if found else (0, datetime.min.replace(tzinfo=UTC))


#: Sorts before every cursor: an endpoint never synced is the most behind.
_NEVER = datetime.min.replace(tzinfo=UTC)


class Abandoned(Exception):
    """The station was stopped between pages because the worker is shutting down."""


@dataclass
class StationOutcome:
    station_id: str
    published: int = 0
    skipped: int = 0
    #: Readings re-read unchanged (inside the lookback, or past a held cursor): not sent again.
    unchanged: int = 0
    #: Items the vendor still listed without a value once they fell out of the lookback.
    never_reported: int = 0
    #: Not called this cycle: the vendor's throttling or call budget left no room (next cycle).
    deferred: bool = False
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
    """Shared back-off after a 429: every station waits until the vendor's Retry-After has passed,
    once. When throttling persists after that wait (a second station throttled again after waiting,
    or a Retry-After longer than a cycle may wait) the gate trips: the stations still to call are
    deferred to the next cycle without a call, so a throttled vendor costs one Retry-After per
    cycle, not one per station. One gate per cycle."""

    DEFAULT_RETRY_AFTER_S = 1.0
    MAX_RETRY_AFTER_S = 60.0
    #: Stations throttled again after waiting before the vendor counts as throttling persistently
    #: (one alone may be a station-specific limit).
    PERSISTENT_AFTER = 2

    def __init__(self, stop: threading.Event) -> None:
        self._resume_at = 0.0
        self._lock = threading.Lock()
        self._stop = stop
        self._throttled_after_wait = 0
        self.tripped = False

    def hit(self, retry_after_s: float | None, *, waited_before: bool) -> float:
        wait = retry_after_s if retry_after_s is not None else self.DEFAULT_RETRY_AFTER_S
        with self._lock:
            self._throttled_after_wait += waited_before
            if self._throttled_after_wait >= self.PERSISTENT_AFTER or wait > self.MAX_RETRY_AFTER_S:
                self.tripped = True
            self._resume_at = max(self._resume_at, time.monotonic() + min(wait, self.MAX_RETRY_AFTER_S))
        return wait

    def wait(self) -> None:
        while not self._stop.is_set() and not self.tripped:
            remaining = self._resume_at - time.monotonic()
            if remaining <= 0:
                return
            self._stop.wait(remaining)


class Allotment:
    """The calls one cycle may make per budget (thread-safe countdown): per share name, and for a
    station budget per station, each station starting from the same per-cycle share."""

    def __init__(self, shares: dict[str, int]) -> None:
        self._shares = dict(shares)
        self._left: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, uses: Sequence[tuple[str, str]]) -> bool:
        """One call from every `(share, counter)` it draws on, or from none."""
        with self._lock:
            left = {counter: self._left.get(counter, self._shares.get(share, 1)) for share, counter in uses}
            if any(n <= 0 for n in left.values()):
                return False
            for counter, n in left.items():
                self._left[counter] = n - 1
            return True


class BudgetPacer:
    """Spreads a call budget over the cycles: a cycle may use the share of the budget that accrued
    since the previous cycle (`calls x elapsed / period` at `PACE` of the rate, because cycles do
    not start in phase with the budget's sliding window; at least one call), and the whole budget
    when a period or more has passed (the first cycle too). Without pacing the first cycle of a
    period takes everything and the cycles after it get nothing until the period rolls over. A
    station budget's share is each station's. The Redis count of the calls made stays the hard
    limit; this only keeps every cycle some of it."""

    PACE = 0.9

    def __init__(self) -> None:
        self._last: dict[str, datetime] = {}
        #: The fraction of a call each budget accrued but no cycle could use yet (a share of 1.4
        #: calls a cycle gives 1, 1, 2, ...: floored every cycle, the 0.4 would be lost for good).
        self._credit: dict[str, float] = {}

    def allot(self, plans: list[EndpointPlan], now: datetime) -> Allotment:
        shares: dict[str, int] = {}
        for plan in plans:
            for budget in plan.budgets:
                name = budget.share(plan.name)
                if name in shares:
                    continue  # a vendor or station budget shared with an endpoint already paced
                last = self._last.get(name)
                share = 1.0 if last is None else (now - last).total_seconds() / budget.period_s
                if share >= 1.0:
                    shares[name] = budget.calls  # a whole period since: the Redis count decides
                    self._credit[name] = 0.0
                else:
                    accrued = self._credit.get(name, 0.0) + budget.calls * share * self.PACE
                    shares[name] = max(1, math.floor(accrued))
                    # Never below one call of debt: "at least one call a cycle" is paid back later.
                    self._credit[name] = max(-1.0, accrued - shares[name])
                self._last[name] = now
        return Allotment(shares)


@dataclass(slots=True)
class _Move:
    """One window's page after publishing: what it sent, for the cursor write its PUBACKs earn."""

    station: Station
    window: _Window
    sent: list[tuple[Reading, str]]

    def written(self, advance: CursorAdvance) -> None:
        """The fenced write went through: the window now starts from where it put the marks."""
        if advance.ts is not None:
            self.window.cursor = advance.ts
        if advance.published_through is not None:
            self.window.maybe_sent_through = advance.published_through


class _PageSettlement:
    """A window's last page (or a batched answer's), settled on the settler's thread (`Settlement`).

    It counts into outcomes of its own, merged with the lane's per station at the end of the cycle:
    the lane that handed it on may meanwhile count into its own for the station's next endpoint.
    """

    def __init__(self, runner: CycleRunner, batch: PublishBatch, moves: list[_Move]) -> None:
        self.batch = batch
        self.timeout_s = runner.puback_timeout_s
        self.deadline = time.monotonic() + self.timeout_s
        self.settled = False
        self.outcomes = {m.station.station_id: StationOutcome(m.station.station_id) for m in moves}
        self._runner = runner
        self._moves = moves
        self._advances: list[tuple[_Move, CursorAdvance]] = []

    def _label(self) -> str:
        first = self._moves[0].station.station_id
        return first if len(self._moves) == 1 else f"{first} (+{len(self._moves) - 1})"

    def acked(self) -> list[CursorAdvance]:
        for move in self._moves:
            self.outcomes[move.station.station_id].published += len(move.sent)
        self._advances = [(m, a) for m in self._moves if (a := CycleRunner._cursor_advance(m)) is not None]
        if not self._advances:
            self._settled()
        return [advance for _, advance in self._advances]

    def failed(self, error: SyncError) -> None:
        for move in self._moves:  # queued and maybe delivered, their cursors unmoved
            self.outcomes[move.station.station_id].unconfirmed += len(move.sent)
        self._runner._classify(list(self.outcomes.values()), self._label(), error)
        self._settled()

    def written(self, results: Sequence[bool | Exception]) -> None:
        for (move, advance), result in zip(self._advances, results, strict=True):
            if isinstance(result, Exception):
                # Acknowledged by the broker, but the cursor stays: the next cycle sends them again.
                outcome = self.outcomes[move.station.station_id]
                outcome.unconfirmed += len(move.sent)
                self._runner._classify([outcome], move.station.station_id, result)
            else:
                move.written(advance)
        self._settled()

    def _settled(self) -> None:
        # The cycle keeps its settlements until it ends: only the outcomes, not the pages' readings.
        self.settled = True
        self._moves, self._advances = [], []

    def abandon(self) -> None:
        """The cycle ended before this page settled (drain deadline): what it sent may come again."""
        for move in self._moves:
            outcome = self.outcomes[move.station.station_id]
            outcome.abandoned = True
            outcome.unconfirmed += len(move.sent)


class _Drain:
    """The cycle's drain deadline: none until `stop` is set or the lease is lost, then
    `drain_deadline_s` from that moment."""

    def __init__(self, runner: CycleRunner, drain_deadline_s: float) -> None:
        self._runner = runner
        self._drain_deadline_s = drain_deadline_s
        self.deadline: float | None = None

    def starts(self) -> bool:
        """True the first time it is asked after the drain began (a lost lease ends the cycle like
        a shutdown: no station may start without it)."""
        if self.deadline is None and (self._runner.stop.is_set() or not self._runner.lease_held()):
            self.deadline = time.monotonic() + self._drain_deadline_s
            return True
        return False

    def timeout(self) -> float:
        """How long to wait before looking again (<= 0: the deadline has passed)."""
        return 0.2 if self.deadline is None else min(0.2, self.deadline - time.monotonic())


#: A unit of a cycle: one station with its unbatched endpoints, or the stations of one batched request.
_Unit = tuple[list[Station], list[EndpointPlan]]


class _Lanes:
    """The cycle's lanes: each takes the next unit from one queue until it is empty or the cycle drains."""

    def __init__(self, runner: CycleRunner, work: queue.SimpleQueue[_Unit], cursors: _CursorSnapshot, until: datetime):
        self._runner = runner
        self._work = work
        self._cursors = cursors
        self._until = until
        self.draining = threading.Event()
        #: Units in progress, by lane thread.
        self.running: dict[int, _Unit] = {}
        #: What the lanes finished (list.extend is atomic: the lanes share it without a lock).
        self.outcomes: list[StationOutcome] = []

    def run(self) -> None:
        me = threading.get_ident()
        while not (self.draining.is_set() or self._runner.stop.is_set()):
            try:
                unit = self._work.get_nowait()
            except queue.Empty:
                return
            self.running[me] = unit
            try:
                self.outcomes.extend(self._runner._run_unit(unit[0], unit[1], self._cursors, self._until))
            finally:
                del self.running[me]

    def abandon_queued(self) -> list[StationOutcome]:
        """The outcomes so far, with the units no lane started counted as abandoned."""
        while True:
            try:
                stations, _ = self._work.get_nowait()
            except queue.Empty:
                return list(self.outcomes)
            self.outcomes.extend(StationOutcome(st.station_id, abandoned=True) for st in stations)


class Deferred(Exception):
    """The vendor's budget or throttling leaves no room for this station in this cycle."""


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
        self._budget_pacer = BudgetPacer()
        self._allotment = Allotment({})
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="station")
        self._settler = Settler(cursors)
        #: This cycle's pages handed to the settler (their outcomes join the stations' own).
        self._settlements: list[_PageSettlement] = []

    def run(
        self, stations: list[Station], *, signal_id: str | None = None, drain_deadline_s: float = 20.0
    ) -> CycleResult:
        """Sync `stations`; returns when all are done, or, once `stop` is set, within `drain_deadline_s`."""
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        self._throttle = ThrottleGate(self.stop)
        until = self.now()
        self._allotment = self._budget_pacer.allot(self.endpoints(), until)
        cursors = {
            plan.name: (self.cursor_store.cursors(plan.name), self.cursor_store.published_through(plan.name))
            for plan in self.endpoints()
        }
        # Most behind first: when a call budget runs out, the stations deferred are those synced
        # most recently, so every station gets its turn across cycles.
        ordered = sorted(stations, key=lambda st: _lag_key(st, cursors))
        self._settlements = []
        outcomes = _merge(
            self._collect(self._units(ordered), cursors, until, drain_deadline_s) + self._settled_outcomes()
        )
        finished_at = datetime.now(UTC)
        errors = Counter(o.error.value for o in outcomes if o.error is not None and not o.deferred)
        aborted = self.stop.is_set() or any(o.abandoned for o in outcomes) or len(outcomes) < len(stations)
        record = CycleRecord(
            signal_id=signal_id,
            started_at=started_at,
            finished_at=finished_at,
            duration_ms=(time.monotonic() - t0) * 1000,
            stations_total=len(stations),
            stations_synced=sum(1 for o in outcomes if o.error is None and not o.abandoned),
            stations_failed=sum(1 for o in outcomes if o.error is not None and not o.deferred),
            stations_deferred=sum(1 for o in outcomes if o.deferred),
            readings_published=sum(o.published for o in outcomes),
            duplicates_possible=sum(o.unconfirmed for o in outcomes),
            errors_by_class=dict(errors),
            aborted=aborted,
        )
        return CycleResult(record, sum(o.skipped for o in outcomes), outcomes)

    def _collect(
        self, units: list[_Unit], cursors: _CursorSnapshot, until: datetime, drain_deadline_s: float
    ) -> list[StationOutcome]:
        """Run `units` on `concurrency` lanes; the outcomes, once every lane and every page they
        handed to the settler is done (or, after `stop` or a lost lease, once `drain_deadline_s`
        has passed)."""
        # Each lane takes the next unit from one queue: a Future per unit (10,000 per cycle, each
        # with its own lock and condition) cost the main thread more than the lanes' Redis writes.
        work: queue.SimpleQueue[_Unit] = queue.SimpleQueue()
        for unit in units:
            work.put(unit)
        lane = _Lanes(self, work, cursors, until)
        lanes = [self._pool.submit(lane.run) for _ in range(min(self.concurrency, len(units)))]
        drain = _Drain(self, drain_deadline_s)
        while True:
            if drain.starts():
                lane.draining.set()  # units not started yet are abandoned outright
            timeout = drain.timeout()
            if timeout <= 0:
                # A copy first (made in C, under the GIL): the lanes still change the dict.
                running = [st.station_id for stations, _ in list(lane.running.values()) for st in stations]
                logger.warning(
                    "shutdown deadline reached; abandoning stations still running",
                    extra={"stations": running[:20], "count": len(running)},
                )
                return lane.abandon_queued()
            if not wait(lanes, timeout=timeout).not_done:
                break
        for f in lanes:
            if f.exception() is not None:  # `_run_unit` catches everything a unit raises: a bug
                logger.error("a station lane ended unexpectedly", exc_info=f.exception())
        outcomes = lane.abandon_queued()
        while not self._settler.wait_idle(max(0.0, drain.timeout())):
            drain.starts()
            if drain.timeout() <= 0:
                logger.warning(
                    "shutdown deadline reached; pages still waiting for PUBACKs or their cursor write",
                    extra={"count": self._settler.outstanding},
                )
                break
        return outcomes

    def _settled_outcomes(self) -> list[StationOutcome]:
        """The settled pages' outcomes; a page still unsettled (the drain deadline passed) counts
        as abandoned, what it sent as possibly sent twice."""
        outcomes: list[StationOutcome] = []
        for settlement in self._settlements:
            if not settlement.settled:
                settlement.abandon()
            outcomes.extend(settlement.outcomes.values())
        return outcomes

    # -- per station: the one place errors are classified -----------------------------------

    def endpoints(self) -> list[EndpointPlan]:
        """The reading endpoints of the source (one default endpoint for a source that declares none)."""
        return list(self.source.endpoints) or [EndpointPlan()]

    def _units(self, stations: list[Station]) -> list[_Unit]:
        """The cycle's plan: one unit per station for its unbatched endpoints, and for each batched
        endpoint one unit per `batch_size` stations (one request serves them all)."""
        plans = self.endpoints()
        single = [p for p in plans if p.batch_size <= 1]
        units: list[_Unit] = [([st], single) for st in stations] if single else []
        for plan in plans:
            if plan.batch_size > 1:
                size = plan.batch_size
                units.extend((stations[i : i + size], [plan]) for i in range(0, len(stations), size))
        return units

    def _run_unit(
        self, stations: list[Station], plans: list[EndpointPlan], cursors: _CursorSnapshot, until: datetime
    ) -> list[StationOutcome]:
        outcomes = {st.station_id: StationOutcome(st.station_id) for st in stations}
        label = stations[0].station_id if len(stations) == 1 else f"{stations[0].station_id} (+{len(stations) - 1})"
        if len(stations) == 1 and len(plans) > 1:
            # A station's endpoints most behind first (as the stations are): when a budget they share
            # has room for fewer calls than endpoints, the one deferred this cycle goes first the next,
            # instead of the same endpoint taking the share every cycle and the other never read.
            sid = stations[0].station_id
            plans = sorted(plans, key=lambda p: cursors.get(p.name, ({}, {}))[0].get(sid) or _NEVER)
        throttled_once = False
        while True:
            try:
                for plan in plans:
                    ends, published = cursors.get(plan.name, ({}, {}))
                    if plan.batch_size > 1:
                        self._sync_batch(stations, plan, (ends, published), until, outcomes)
                        continue
                    sid = stations[0].station_id
                    self._sync_endpoint(stations[0], plan, ends.get(sid), published.get(sid), until, outcomes[sid])
                return list(outcomes.values())
            except Abandoned:
                return self._all(outcomes, abandoned=True)
            except Deferred:
                return self._all(outcomes, deferred=True, error=ErrorClass.THROTTLED)
            except ThrottledError as exc:
                waited = self._throttle.hit(exc.retry_after_s, waited_before=throttled_once)
                if not throttled_once and not self._throttle.tripped and not self.stop.is_set():
                    throttled_once = True
                    logger.info(
                        "throttled by the vendor; backing off", extra={"station_id": label, "retry_after_s": waited}
                    )
                    continue
                return [self._failed(o, ErrorClass.THROTTLED, exc) for o in outcomes.values()]
            except Exception as exc:
                return self._classify(list(outcomes.values()), label, exc)

    def _classify(self, outcomes: list[StationOutcome], label: str, exc: Exception) -> list[StationOutcome]:
        """What an error means for the stations it stopped, in a lane or when their page settled."""
        if isinstance(exc, LeaseLost):
            logger.error("lease lost mid-cycle; station stopped", extra={"station_id": label, "reason": str(exc)})
            return self._all({o.station_id: o for o in outcomes}, abandoned=True)
        # Transient, permanent and auth: the station is done for this cycle. An AuthError arrives
        # after its renewal was already tried where the credential lives (the source transport
        # refreshes once on a 401; the MQTT supervisor reconnects with a fresh ConnectionSpec).
        if isinstance(exc, SyncError):
            return [self._failed(o, exc.error_class, exc) for o in outcomes]
        if not isinstance(exc, RedisError):  # a RedisError: the cursor could not be written, retried next cycle
            logger.error(
                "unexpected error; station treated as transient failure", extra={"station_id": label}, exc_info=exc
            )
        return [self._failed(o, ErrorClass.TRANSIENT, exc) for o in outcomes]

    @staticmethod
    def _all(outcomes: dict[str, StationOutcome], **fields: object) -> list[StationOutcome]:
        for outcome in outcomes.values():
            for name, value in fields.items():
                setattr(outcome, name, value)
        return list(outcomes.values())

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

    def _open_window(
        self, plan: EndpointPlan, cursor: datetime | None, published: datetime | None, now: datetime
    ) -> _Window:
        until = now - timedelta(seconds=plan.settle_s)
        floor = until - self.backfill
        start = max(cursor, floor) if cursor is not None else floor
        since = max(start - timedelta(seconds=plan.lookback_s), floor)
        sent = max(d for d in (cursor, published) if d is not None) if cursor or published else None
        return _Window(plan, cursor, sent, since, until)

    def _fetch(self, station: Station, window: _Window, resume: object | None) -> ReadingBatch:
        """One page of one (station, endpoint) window from the source."""
        return self.source.fetch_readings(
            station, window.since, window.until, self.page_size, endpoint=window.plan.name, resume=resume
        )

    def _before_call(self, plan: EndpointPlan, stations: list[Station]) -> None:
        """Stop, lease, throttle gate and call budgets: what must hold before each vendor call
        (a batched call draws on the station budget of every station it asks for)."""
        if self.stop.is_set():
            raise Abandoned()
        if not self.lease_held():
            raise LeaseLost("lease not held")
        self._throttle.wait()
        if self._throttle.tripped:
            raise Deferred()
        if plan.budgets:
            uses = [
                (b, b.counter(plan.name, st.station_id))
                for b in plan.budgets
                for st in (stations if b.scope == "station" else stations[:1])
            ]
            if not self._allotment.take([(b.share(plan.name), counter) for b, counter in uses]):
                raise Deferred()  # this cycle's share is spent: the rest is left for the next cycles
            if not self.cursor_store.take_call([(counter, b.calls, b.period_s) for b, counter in uses]):
                raise Deferred()  # the cursor stays where the answer is complete; next cycle goes on

    def _sync_endpoint(
        self,
        station: Station,
        plan: EndpointPlan,
        cursor: datetime | None,
        published: datetime | None,
        now: datetime,
        outcome: StationOutcome,
    ) -> None:
        window = self._open_window(plan, cursor, published, now)
        resume: object | None = None
        while True:
            self._before_call(plan, [station])
            batch = self._fetch(station, window, resume)
            if batch.resume is None:
                # The last page settles on the settler's thread, while this lane goes on.
                self._note(station, window, batch, outcome)
                publish = self.publisher.new_batch()
                sent = self._send(window, batch, outcome, publish)
                self._hand_on(publish, [_Move(station, window, sent)])
                return
            self._absorb(station, window, batch, outcome)
            resume = batch.resume

    def _sync_batch(
        self,
        stations: list[Station],
        plan: EndpointPlan,
        cursors: tuple[dict[str, datetime], dict[str, datetime]],
        now: datetime,
        outcomes: dict[str, StationOutcome],
    ) -> None:
        """One request for several stations: the window reaches back to the earliest of theirs, and
        each station keeps only what lies inside its own window."""
        ends, published = cursors
        windows = {
            st.station_id: self._open_window(plan, ends.get(st.station_id), published.get(st.station_id), now)
            for st in stations
        }
        since = min(w.since for w in windows.values())
        until = next(iter(windows.values())).until
        resume: object | None = None
        while True:
            self._before_call(plan, stations)
            answer = self.source.fetch_batch(stations, since, until, self.page_size, endpoint=plan.name, resume=resume)
            # Every station's share goes out in one publish batch with one wait for the PUBACKs;
            # then each station's cursor moves on its own.
            publish = self.publisher.new_batch()
            shares: list[tuple[Station, _Window, ReadingBatch, list[tuple[Reading, str]]]] = []
            try:
                for station in stations:
                    window = windows[station.station_id]
                    mine = answer.batches.get(station.station_id) or ReadingBatch()
                    own = ReadingBatch(
                        [r for r in mine if r.ts > window.since],
                        complete_through=mine.complete_through,
                        pending=[ts for ts in mine.pending if ts > window.since],
                        skipped=mine.skipped,
                    )
                    outcome = outcomes[station.station_id]
                    self._note(station, window, own, outcome)
                    shares.append((station, window, own, self._send(window, own, outcome, publish)))
            except SyncError:
                for st, _, _, queued in shares:  # queued and maybe delivered, their cursors unmoved
                    outcomes[st.station_id].unconfirmed += len(queued)
                raise
            if answer.resume is None:
                self._hand_on(publish, [_Move(station, window, sent) for station, window, _, sent in shares])
                return
            self._confirm(publish, [(outcomes[st.station_id], len(sent)) for st, _, _, sent in shares if sent])
            for station, window, _, sent in shares:
                self._move_cursor(station, window, sent, outcomes[station.station_id])
            resume = answer.resume

    def _absorb(self, station: Station, window: _Window, batch: ReadingBatch, outcome: StationOutcome) -> None:
        """One page of one (station, endpoint): note what is pending, publish, move the cursor."""
        self._note(station, window, batch, outcome)
        sent = self._publish_page(station, window, batch, outcome)
        self._move_cursor(station, window, sent, outcome)

    def _note(self, station: Station, window: _Window, batch: ReadingBatch, outcome: StationOutcome) -> None:
        """What a page says about the window: items still pending, how far it is complete."""
        plan = window.plan
        hold_after = window.until - timedelta(seconds=plan.lookback_s)
        outcome.skipped += batch.skipped
        expired = 0
        for ts in batch.pending:
            if ts > hold_after:
                if window.earliest_pending is None or ts < window.earliest_pending:
                    window.earliest_pending = ts
            else:
                expired += 1
        if expired:
            outcome.never_reported += expired
            logger.warning(
                "values never reported inside the lookback; cursor moved past them",
                extra={"station_id": station.station_id, "endpoint": plan.name, "count": expired},
            )
        if batch.complete_through is not None:
            window.complete_through = max(batch.complete_through, window.complete_through or batch.complete_through)

    def _hand_on(self, publish: PublishBatch, moves: list[_Move]) -> None:
        """Give a last page to the settler: it waits for the PUBACKs, then moves the cursors."""
        if not any(m.sent for m in moves) and all(self._cursor_advance(m) is None for m in moves):
            return  # nothing sent and no cursor to move: nothing to settle
        settlement = _PageSettlement(self, publish, moves)
        self._settlements.append(settlement)
        self._settler.submit(settlement)

    def _move_cursor(
        self, station: Station, window: _Window, sent: list[tuple[Reading, str]], outcome: StationOutcome
    ) -> None:
        """Move the cursor of a page that is not the window's last (its lane waits for the write)."""
        move = _Move(station, window, sent)
        advance = self._cursor_advance(move)
        if advance is None:
            return
        # One fenced write with the digests: the lanes writing together share one script call.
        result = self.cursor_store.advance_cursors([advance])[0]
        if isinstance(result, Exception):
            # Acknowledged by the broker, but the cursor stays: the next cycle sends them again.
            outcome.unconfirmed += len(sent)
            raise result
        move.written(advance)

    @staticmethod
    def _cursor_advance(move: _Move) -> CursorAdvance | None:
        """The fenced write a page's PUBACKs allow (None: nothing to write): the cursor up to where
        the window is complete, what was published past it, and the digests to compare later."""
        window, sent = move.window, move.sent
        target = window.cursor_target()
        if target is not None and window.cursor is not None and target <= window.cursor:
            target = None
        newest = max((r.ts for r, _ in sent), default=None)
        # Published past where the cursor may go: a later cycle reads them again and must compare.
        ahead = newest if newest is not None and (target is None or newest > target) else None
        if ahead is not None and window.maybe_sent_through is not None and ahead <= window.maybe_sent_through:
            ahead = None
        digests: list[tuple[str, str]] = []
        if sent and (window.plan.lookback_s > 0 or ahead is not None):
            keep = sent if window.plan.lookback_s > 0 else [(r, d) for r, d in sent if target is None or r.ts > target]
            digests = [(r.message_id, d) for r, d in keep]
        if target is None and ahead is None and not digests:
            return None
        return CursorAdvance(
            move.station.station_id, target, window.plan.name, ahead, digests, digest_ttl_s(window.plan)
        )

    def _publish_page(
        self, station: Station, window: _Window, page: list[Reading], outcome: StationOutcome
    ) -> list[tuple[Reading, str]]:
        """Send a page's new and changed readings and wait for all their PUBACKs; returns what was
        sent and acknowledged, with its payload digest. The caller moves the cursor only afterwards."""
        batch = self.publisher.new_batch()
        sent = self._send(window, page, outcome, batch)
        if sent:
            self._confirm(batch, [(outcome, len(sent))])
        return sent

    def _confirm(self, batch: PublishBatch, counts: list[tuple[StationOutcome, int]]) -> None:
        """Wait for every PUBACK of `batch`, then count what each station sent as published."""
        try:
            batch.wait(self.puback_timeout_s)
        except SyncError:
            for outcome, n in counts:
                outcome.unconfirmed += n
            raise
        for outcome, n in counts:
            outcome.published += n

    def _send(
        self, window: _Window, page: list[Reading], outcome: StationOutcome, batch: PublishBatch
    ) -> list[tuple[Reading, str]]:
        """Queue a page's new and changed readings into `batch`; returns what was queued, with its
        payload digest (the caller waits for the PUBACKs)."""
        encoded: list[tuple[Reading, OutboundMessage]] = []
        for reading in page:
            try:
                encoded.append((reading, to_message(reading)))
            except PermanentError as exc:  # this reading only: skip it, keep the rest
                self._skip(outcome, reading.message_id, exc)
        fresh = self._drop_unchanged(window, encoded, outcome)
        if not fresh:
            return []
        messages = [m for _, m, _ in fresh]
        # Raises (transient) with nothing of the page queued when the uplink's queue stays full.
        refused = self.publisher.publish_page(messages, batch)
        refused_ids = set()
        for message, refusal in refused:
            refused_ids.add(message.message_id)
            self._skip(outcome, message.message_id, refusal)
        return [(r, d) for r, m, d in fresh if m.message_id not in refused_ids]

    def _drop_unchanged(
        self, window: _Window, encoded: list[tuple[Reading, OutboundMessage]], outcome: StationOutcome
    ) -> list[tuple[Reading, OutboundMessage, str]]:
        """Readings with a digest; those that may have been sent before are kept only when their
        payload differs from the one remembered for their id (first value, or a revision)."""
        fresh = [(r, m, payload_digest(m.payload)) for r, m in encoded]
        through = window.maybe_sent_through
        if through is None:
            return fresh
        again = [i for i, (r, _, _) in enumerate(fresh) if r.ts <= through]
        if not again:
            return fresh
        known = self.cursor_store.seen_digests([fresh[i][1].message_id for i in again])
        drop = {i for i, digest in zip(again, known, strict=True) if digest == fresh[i][2]}
        outcome.unchanged += len(drop)
        return [item for i, item in enumerate(fresh) if i not in drop]

    @staticmethod
    def _skip(outcome: StationOutcome, message_id: str, exc: PermanentError) -> None:
        outcome.skipped += 1
        logger.warning(
            "reading skipped", extra={"station_id": outcome.station_id, "message_id": message_id, "error": str(exc)}
        )

    def close(self) -> None:
        self.stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._settler.close()
