"""The long-lived worker: lease, signals in, one cycle at a time, heartbeat, graceful shutdown.

Lease and uplink go together: the worker connects to MQTT only while it holds the lease, and a lost
lease (taken over, expired while Redis was unreachable, gone with a Redis restart) makes it stand
down — stop cycling, give back its signals, hold the uplink (the open connection stays, a dropped
one is not reconnected) — and stand by for the lease again in the same process, so a Redis outage
needs neither a restart nor a new broker connection. A worker that takes the lease over connects
with the same client id and the broker drops the held connection; it is not reconnected.

Cursors also live in a durable checkpoint (`checkpoint.py`, DynamoDB), written after every cycle:
a cycle that finds the cursors gone from Redis (a restart without data) restores them first.

Threads and who owns what:
- the *main* thread runs cycles, one at a time, and the shutdown sequence;
- the *intake* thread receives signals and folds them into at most one pending follow-up cycle
  (so 50 signals arriving during a cycle cause one more cycle, not 50); an error in one round of
  it is logged and backed off, never the end of the loop;
- the *heartbeat* thread writes the Redis heartbeat and the local status file the `health`
  command reads, and emits `HeartbeatAge`;
- the lease renewer, the MQTT supervisors and the SQS visibility extender own their own loops.

The status file lists every one of these loops that should be running and is not (`dead_loops`):
`health` fails on any, so ECS replaces a worker that can no longer take signals or keep its lease.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.exceptions import RedisError

from functions.common.signal import Command
from functions.common.state import RUN_HISTORY_LENGTH, CycleRecord, Heartbeat
from functions.sync_worker.backoff import Backoff
from functions.sync_worker.checkpoint import CheckpointFenced, CursorCheckpoint
from functions.sync_worker.cycle import CycleResult, CycleRunner
from functions.sync_worker.observability import WorkerTelemetry, logger
from functions.sync_worker.settings import WorkerSettings
from functions.sync_worker.signals import ReceivedSignal, SignalSource
from functions.sync_worker.source.base import SourceAdapter, Station
from functions.sync_worker.store import Lease, LeaseLost, StateStore
from functions.sync_worker.uplink.uplink import MqttUplink

EXIT_OK = 0


class CheckpointUnavailable(RuntimeError):
    """Redis has no cursors and the checkpoint that would restore them cannot be read right now."""


@dataclass
class Job:
    """A cycle to run: the signals it answers (acknowledged when it finishes) and the stations."""

    signals: list[ReceivedSignal] = field(default_factory=list)
    #: None: every station. Otherwise the union of the signals' subsets.
    stations: set[str] | None = None
    continuous: bool = False

    def absorb(self, received: ReceivedSignal) -> None:
        first = not self.signals
        self.signals.append(received)
        subset = received.signal.stations
        if subset is None:
            self.stations = None
        elif first:
            self.stations = set(subset)
        elif self.stations is not None:
            self.stations |= set(subset)

    @property
    def signal_id(self) -> str | None:
        return str(self.signals[0].signal.id) if self.signals else None


class StationDirectory:
    """The station list, cached (listing 10,000 stations every cycle would cost more than syncing)."""

    def __init__(self, source: Callable[[], SourceAdapter], allowed: list[str] | None, ttl_s: float) -> None:
        self._source = source
        self._allowed = set(allowed) if allowed else None
        self._ttl_s = ttl_s
        self._cached: list[Station] | None = None
        self._fetched_at = 0.0

    def invalidate(self) -> None:
        self._cached = None

    def select(self, subset: set[str] | None) -> list[Station]:
        if self._cached is None or time.monotonic() - self._fetched_at > self._ttl_s:
            try:
                listed = self._source().list_stations()
            except Exception:
                if self._cached is None:
                    raise
                # A refused refresh (a vendor's daily list quota spent) must not be asked again every
                # cycle, spending a refused call each time: the cached list stands for another TTL.
                self._fetched_at = time.monotonic()
                logger.warning(
                    "station list refresh failed; using the cached list until the next refresh",
                    extra={"retry_in_s": self._ttl_s},
                    exc_info=True,
                )
            else:
                self._cached = [s for s in listed if self._allowed is None or s.station_id in self._allowed]
                self._fetched_at = time.monotonic()
        stations = self._cached
        if subset is not None:
            known = {s.station_id for s in stations}
            unknown = sorted(subset - known)
            if unknown:
                logger.warning(
                    "signal names unknown stations; ignored", extra={"stations": unknown[:20], "count": len(unknown)}
                )
            stations = [s for s in stations if s.station_id in subset]
        return stations


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        *,
        source_factory: Callable[[], SourceAdapter],
        uplink: MqttUplink,
        lease: Lease,
        state: StateStore,
        signals: SignalSource | None,
        telemetry: WorkerTelemetry,
        worker_id: str,
        checkpoint: CursorCheckpoint | None = None,
    ) -> None:
        self.settings = settings
        self.source_factory = source_factory
        self.uplink = uplink
        self.lease = lease
        self.state = state
        self.signals = signals
        self.telemetry = telemetry
        self.worker_id = worker_id
        self.checkpoint = checkpoint
        self.stop_event = threading.Event()
        self._source = source_factory()
        self.directory = StationDirectory(lambda: self._source, settings.stations, settings.station_list_ttl_s)
        self.runner = CycleRunner(
            self._source,
            uplink,
            state,
            concurrency=settings.concurrency,
            page_size=settings.page_size,
            backfill_window_s=settings.backfill_window_s,
            puback_timeout_s=settings.puback_timeout_s,
            lease_held=lambda: lease.held,
        )
        self._cond = threading.Condition()
        self._pending: Job | None = None
        self._continuous = False
        self._next_due: float | None = None
        self._reload = False
        self._cycle_running = False
        #: True while this worker holds the lease and takes signals (guarded by `_cond`).
        self._active = False
        #: Whether a signal given back reaches a worker again (SQS) or would be dropped (pub/sub,
        #: direct submissions): those this worker keeps until it holds the lease again.
        self._redelivers = signals is not None and signals.redelivers
        #: Cycle records not yet in the Redis run history (Redis down, or the lease lost): written
        #: oldest first as soon as the lease is held and Redis answers.
        self._unrecorded: deque[CycleRecord] = deque(maxlen=RUN_HISTORY_LENGTH)
        self._history_lock = threading.Lock()
        self._heartbeat_written_at: float | None = None
        self._heartbeat_written_wall: float | None = None
        self.cycles_run = 0
        self._intake: threading.Thread | None = None
        self._heartbeat: threading.Thread | None = None
        self.last_record: CycleRecord | None = None
        #: Delay before retrying a cycle Redis refused to start: kept across attempts so it grows
        #: while Redis stays down, reset once a cycle runs.
        self._cycle_start_backoff = Backoff(base_s=0.5, cap_s=10.0)

    # -- lifecycle ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Signal-handler safe: only sets events."""
        self.stop_event.set()
        self.runner.stop.set()
        with self._cond:
            self._cond.notify_all()

    def run(self, *, once: bool = False, stations: set[str] | None = None) -> int:
        """Serve until stopped (or run one cycle with `once`); returns the process exit code."""
        # The heartbeat thread runs from the start: a standby reports itself in the status file too.
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        self._heartbeat.start()
        try:
            if once:
                if self._take_lease():
                    self._run_job(Job(stations=stations))
                return EXIT_OK
            if self.signals is not None:
                self._start_intake()
            while self._take_lease():
                self._serve()
                if self.stop_event.is_set():
                    break
                self._stand_down()
            return EXIT_OK
        finally:
            self._shutdown()

    def _take_lease(self) -> bool:
        """Stand by until the lease is ours (False: stopped first), then connect and take signals."""
        if not self.lease.wait_acquire(self.stop_event):
            logger.info("stopped while standing by")
            return False
        with self._cond:
            self._active = True
            self._cond.notify_all()
        # Connect only as the lease holder: two connections with one client id would evict each other.
        self.uplink.resume()
        self.uplink.start()
        if not self.uplink.wait_connected(10.0):
            logger.warning("MQTT not connected yet; publishes wait for the supervisor's reconnect")
        self._beat()
        return True

    def _serve(self) -> None:
        """Run cycles until stopped or the lease is lost."""
        logger.info(
            "worker serving",
            extra={"mode": self.settings.mode, "worker_id": self.worker_id, "fencing_token": self.lease.token},
        )
        while not self.stop_event.is_set() and self.lease.held:
            job = self._next_job(timeout_s=1.0)
            if job is not None:
                self._run_job(job)

    def _stand_down(self) -> None:
        """The lease is gone: take no more signals, give back the unrun ones (another worker may run
        them), and hold the uplink: its connection stays for when this worker gets the lease back,
        and is not reconnected if whoever takes the lease (same client id) makes the broker drop it."""
        logger.error("lease lost: this worker stops cycling and stands by", extra={"fencing_token": self.lease.token})
        unrun = None
        with self._cond:
            self._active = False
            if self._redelivers:
                unrun, self._pending = self._pending, None
        if self.signals is not None and unrun is not None:
            self.signals.release(unrun.signals)
        self.uplink.hold()
        self.write_status(False)

    # -- signals ------------------------------------------------------------------------------

    def _start_intake(self) -> None:
        self._intake = threading.Thread(target=self._intake_loop, name="signal-intake", daemon=True)
        self._intake.start()

    def _intake_loop(self) -> None:
        assert self.signals is not None
        backoff = Backoff(base_s=0.5, cap_s=10.0)
        while not self.stop_event.is_set():
            try:
                with self._cond:
                    # A standby takes no signals: they belong to the worker that holds the lease.
                    active = self._cond.wait_for(lambda: self._active or self.stop_event.is_set(), timeout=1.0)
                if not active or self.stop_event.is_set():
                    continue
                for received in self.signals.receive(self.stop_event):
                    self.submit(received)
                backoff.reset()
            except Exception:
                # `receive` already turns a bad message into a rejection and a transport error into
                # a retry; whatever still gets here must not end the intake either.
                delay = backoff.next_delay()
                logger.exception("signal intake round failed; retrying", extra={"retry_in_s": round(delay, 2)})
                self.stop_event.wait(delay)

    def loops(self) -> dict[str, bool]:
        """Every background loop this worker needs right now, and whether it is alive."""
        out: dict[str, bool] = {}
        if self._intake is not None:
            out["signal-intake"] = self._intake.is_alive()
        if self._heartbeat is not None:
            out["heartbeat"] = self._heartbeat.is_alive()
        out.update(self.lease.loops())
        if self._active:
            out.update(self.uplink.loops())
        if self.signals is not None:
            out.update(self.signals.loops())
        return out

    def submit(self, received: ReceivedSignal) -> None:
        """Fold one signal into the worker's plan; never blocks on a running cycle. While stopping or
        standing by, a signal is given back at once if its transport redelivers it; otherwise a
        standby keeps it for when it holds the lease again."""
        command = received.signal.command
        logger.info(
            "signal received",
            extra={
                "signal_id": str(received.signal.id),
                "command": command.value,
                "source": received.signal.source.value,
            },
        )
        with self._cond:
            accepted = not self.stop_event.is_set() and (self._active or not self._redelivers)
            if accepted:
                self._plan(received)
                self._cond.notify_all()
        if not accepted:
            logger.warning(
                "signal not taken: this worker is stopping or standing by",
                extra={"signal_id": str(received.signal.id), "given_back": self._redelivers},
            )
            if self.signals is not None:
                self.signals.release([received])
        elif command in (Command.STOP_SYNC, Command.RELOAD) and self.signals is not None:
            self.signals.done([received])

    def _plan(self, received: ReceivedSignal) -> None:
        """Apply one signal to the plan; the caller holds `_cond`."""
        command = received.signal.command
        if command is Command.STOP_SYNC:
            self._continuous = False
            self._next_due = None
        elif command is Command.RELOAD:
            self._reload = True
        else:
            if command is Command.START_SYNC and self.settings.mode == "continuous":
                self._continuous = True
            if self._pending is None:
                self._pending = Job()
            self._pending.absorb(received)

    def _next_job(self, timeout_s: float) -> Job | None:
        with self._cond:
            deadline = time.monotonic() + timeout_s
            while not self.stop_event.is_set():
                if self._pending is not None:
                    job, self._pending = self._pending, None
                    return job
                if self._continuous and self._next_due is not None and time.monotonic() >= self._next_due:
                    return Job(continuous=True)
                if self._reload:
                    self._apply_reload()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                if self._continuous and self._next_due is not None:
                    remaining = min(remaining, max(0.0, self._next_due - time.monotonic()))
                self._cond.wait(remaining)
            return None

    def _apply_reload(self) -> None:
        self._reload = False
        logger.info("reload: new source adapter and a fresh station list")
        old = self._source
        self._source = self.source_factory()
        self.runner.source = self._source
        self.directory.invalidate()
        try:
            old.close()
        except Exception:
            logger.warning("closing the previous source failed", exc_info=True)

    # -- one cycle ----------------------------------------------------------------------------

    def _run_job(self, job: Job) -> None:
        if self._reload:
            with self._cond:
                self._apply_reload()
        logger.set_correlation_id(job.signal_id)
        cycle_started = time.monotonic()
        self._cycle_running = True
        try:
            result = self._run_cycle(job)
        finally:
            self._cycle_running = False
        if result is None:  # could not start (Redis down): keep the signals for a retry
            with self._cond:
                if self._pending is None:
                    self._pending = job
                else:
                    for s in job.signals:
                        self._pending.absorb(s)
            return
        self.cycles_run += 1
        record = result.record
        self.last_record = record
        self._record_history(record)
        self._save_checkpoint()
        connections, reconnects, planned, latencies = self.uplink.take_cycle_stats()
        self.telemetry.cycle(
            record,
            readings_skipped=result.readings_skipped,
            connections_opened=connections,
            reconnects=reconnects,
            planned_reconnects=planned,
            puback_latencies_ms=latencies,
        )
        logger.info(
            "cycle finished",
            extra={"cycle": record.model_dump(mode="json"), "readings_skipped": result.readings_skipped},
        )
        if self.signals is not None and job.signals:
            if record.aborted:
                self.signals.release(job.signals)  # another worker (or our restart) runs it again
            else:
                self.signals.done(job.signals)
        with self._cond:
            if self._continuous:
                self._next_due = cycle_started + self.settings.interval_s
        logger.set_correlation_id(None)

    def _run_cycle(self, job: Job) -> CycleResult | None:
        try:
            stations = self.directory.select(job.stations)
        except Exception as exc:
            logger.exception("station list unavailable; cycle skipped")
            now = datetime.now(UTC)
            return CycleResult(
                CycleRecord(
                    signal_id=job.signal_id,
                    started_at=now,
                    finished_at=now,
                    duration_ms=0,
                    stations_total=0,
                    stations_synced=0,
                    stations_failed=0,
                    readings_published=0,
                    errors_by_class={getattr(getattr(exc, "error_class", None), "value", "transient"): 1},
                    station_list_failed=True,
                ),
                0,
                [],
            )
        logger.info(
            "cycle starting",
            extra={"stations": len(stations), "signals": len(job.signals), "continuous": job.continuous},
        )
        try:
            self._restore_cursors()
            result = self.runner.run(
                stations, signal_id=job.signal_id, drain_deadline_s=self.settings.shutdown_deadline_s
            )
        except LeaseLost as exc:  # the restore found the lease gone: stand down and take it again
            logger.warning("lease gone at cycle start; standing down", extra={"error": str(exc)})
            self.lease.drop(str(exc))
            return None
        except (RedisError, CheckpointUnavailable) as exc:
            delay = self._cycle_start_backoff.next_delay()
            logger.warning(
                "cursors unavailable at cycle start (Redis or the checkpoint); retrying",
                extra={"error": str(exc), "retry_in_s": round(delay, 2)},
            )
            self.stop_event.wait(delay)
            return None
        self._cycle_start_backoff.reset()
        return result

    def _restore_cursors(self) -> None:
        """Fill an empty cursor hash from the checkpoint (Redis came back without its data). Without
        this every station would start over at its backfill window; with it, at most the readings of
        the cycle Redis was lost in are sent again. `CheckpointUnavailable` when it cannot be read:
        the cycle waits rather than flooding the platform."""
        if self.checkpoint is None or self.state.cursor_count(self._endpoint_names()) > 0:
            return
        try:
            saved = self.checkpoint.load()
        except Exception as exc:
            raise CheckpointUnavailable(f"checkpoint not readable: {exc}") from exc
        if not saved:
            return  # a first start: nothing was ever checkpointed
        restored = self.state.restore_cursors(saved)
        self.checkpoint.forget()
        logger.warning(
            "cursors restored from the checkpoint", extra={"cursors": restored, "fencing_token": self.lease.token}
        )

    def _endpoint_names(self) -> list[str]:
        """The source's reading endpoints: their cursor hashes are what the checkpoint keeps."""
        return [plan.name for plan in self.runner.endpoints()]

    def _save_checkpoint(self) -> None:
        """After a cycle: the cursors as Redis has them now, into the checkpoint (changed shards only)."""
        if self.checkpoint is None or not self.lease.held or self.lease.token is None:
            return
        try:
            written = self.checkpoint.save(self.state.raw_cursors(self._endpoint_names()), self.lease.token)
        except CheckpointFenced as exc:
            logger.error("checkpoint not written: a newer lease holder wrote it", extra={"error": str(exc)})
        except Exception as exc:  # the next cycle writes it again; Redis still has the cursors
            logger.warning("checkpoint not written", extra={"error": str(exc)})
        else:
            logger.debug("checkpoint written", extra={"shards": written})

    def _record_history(self, record: CycleRecord | None = None) -> None:
        """Add `record` to the run history, after any earlier ones Redis did not take; only the lease
        holder writes. What cannot be written now waits for the next attempt (each cycle, each beat)."""
        with self._history_lock:
            if record is not None:
                self._unrecorded.append(record)
            if not self._unrecorded or not self.lease.held:
                return
            try:
                while self._unrecorded:
                    self.state.record_cycle(self._unrecorded[0])
                    self._unrecorded.popleft()
            except RedisError as exc:
                logger.warning(
                    "run history not written yet", extra={"error": str(exc), "waiting": len(self._unrecorded)}
                )

    # -- heartbeat ----------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        last_metric = time.monotonic()
        while True:
            try:
                now = time.monotonic()
                previous = self._heartbeat_written_at
                self._beat()
                if now - last_metric >= self.settings.heartbeat_metric_interval_s:
                    age = now - previous if previous is not None else now - last_metric
                    self.telemetry.heartbeat_age(round(age, 3))
                    last_metric = now
            except Exception:
                logger.exception("heartbeat round failed")
            if self.stop_event.wait(self.settings.heartbeat_interval_s):
                return

    def _beat(self) -> None:
        connected = self.uplink.connected
        if self.lease.held:
            heartbeat = Heartbeat(
                worker_id=self.worker_id,
                fencing_token=self.lease.token or 0,
                at=datetime.now(UTC),
                mqtt_connected=connected,
                cycle_running=self._cycle_running,
                mode=self.settings.mode,
            )
            try:
                self.state.write_heartbeat(heartbeat)
                self._heartbeat_written_at = time.monotonic()
                self._heartbeat_written_wall = time.time()
            except RedisError as exc:
                logger.warning("heartbeat not written", extra={"error": str(exc)})
            else:
                self._record_history()  # Redis answers again: write what an outage held back
        self.write_status(connected)

    def write_status(self, connected: bool) -> None:
        """The local status file `health` reads: the check runs in another process of the container."""
        status = {
            "worker_id": self.worker_id,
            "pid": os.getpid(),
            "at": time.time(),
            "mqtt_connected": connected,
            "lease_held": self.lease.held,
            "heartbeat_at": self._heartbeat_written_wall,
            "dead_loops": sorted(name for name, alive in self.loops().items() if not alive),
        }
        tmp = f"{self.settings.status_file}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump(status, fh)
            os.replace(tmp, self.settings.status_file)
        except OSError as exc:
            logger.warning("status file not written", extra={"error": str(exc)})

    # -- shutdown -----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Stop taking signals, give back unrun ones, drain PUBACKs, DISCONNECT, release the lease."""
        self.stop_event.set()
        self.runner.stop.set()
        with self._cond:
            unrun, self._pending = self._pending, None
        if self.signals is not None and unrun is not None:
            self.signals.release(unrun.signals)
        self.uplink.close(timeout_s=5.0)
        self.runner.close()
        self.write_status(False)
        self._record_history()  # last chance for records an outage held back
        self.lease.release()
        self._close_resources()
        logger.info("worker stopped", extra={"cycles_run": self.cycles_run})

    def _close_resources(self) -> None:
        if self._intake is not None:
            self._intake.join(2.0)  # a long poll in flight returns by itself; don't close under it
        if self.signals is not None:
            self.signals.close()
        try:
            self._source.close()
        except Exception:
            logger.warning("closing the source failed", exc_info=True)
