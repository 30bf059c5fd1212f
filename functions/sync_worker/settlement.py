"""`Settler`: settles published pages away from the station lanes: waits for each page's PUBACKs,
then moves its cursors, the pages settled together in one fenced write.

Why: a lane that waited for its page's PUBACKs and then for its cursor write spent two round trips
and two thread wake-ups per station doing nothing but wait, so a cycle took more than the vendor's
latency per station and a lane's CPU went into wake-ups. With the settlement handed on, the lane
calls the vendor for its next station while the broker acknowledges the last one. What protects a
reading is unchanged: the settler waits for every PUBACK of a page before it asks for the page's
cursor write, the write is fenced by the lease, and a page whose PUBACKs do not come before its
deadline keeps its cursor. Pages are settled in the order they were handed on: one connection
acknowledges in publish order, so waiting for the oldest first rarely holds a later one back, and
a held-back page only settles later, never wrongly.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from functions.sync_worker.errors import SyncError, TransientError
from functions.sync_worker.observability import logger
from functions.sync_worker.store import CursorAdvance
from functions.sync_worker.uplink.batch import PublishBatch

R = TypeVar("R")


class Settlement(Protocol):
    """One published page on its way to its cursor writes (the cycle's page, or a batched answer)."""

    #: The page's publishes.
    batch: PublishBatch
    #: `time.monotonic()` after which a missing PUBACK fails the page ...
    deadline: float
    #: ... which is this long after it was published.
    timeout_s: float

    def acked(self) -> Sequence[CursorAdvance]:
        """Every PUBACK came: the cursor writes the page may now make (none: nothing to move)."""
        ...

    def failed(self, error: SyncError) -> None:
        """A PUBACK failed or did not come in time: nothing is written, the cursor stays."""
        ...

    def written(self, results: Sequence[bool | Exception]) -> None:
        """The outcome of each write `acked` asked for, in order (an error in its place)."""
        ...


class CursorWriter(Protocol):
    def advance_cursors(self, advances: Sequence[CursorAdvance]) -> list[bool | Exception]: ...


class Settler:
    """One thread that settles what the lanes hand on, oldest first, many pages per cursor write."""

    #: Pages settled in one round: bounds one script call's size.
    MAX_GROUP = 256

    def __init__(self, cursors: CursorWriter) -> None:
        self._cursors = cursors
        self._queue: queue.SimpleQueue[Settlement | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._outstanding = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, settlement: Settlement) -> None:
        """Hand a page on; it is settled after its PUBACKs (or fails at its deadline)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, name="settler", daemon=True)
                    thread.start()
                    self._thread = thread
        with self._idle:
            self._outstanding += 1
        self._queue.put(settlement)

    @property
    def outstanding(self) -> int:
        """Pages handed on and not yet settled."""
        return self._outstanding

    def wait_idle(self, timeout_s: float) -> bool:
        """True once every page handed on is settled; False when `timeout_s` passes first."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._outstanding:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Settle what is queued (within `timeout_s`), then end the thread."""
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            closing = False
            try:
                first_error = self._wait_acked(first)
                # What arrived while the oldest page waited joins its write.
                while len(group) < self.MAX_GROUP:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        closing = True
                        break
                    group.append(item)
                self._settle(group, first_error)
            except Exception:  # the thread must outlive any bug: a page it did not settle counts as abandoned
                logger.exception("settling pages failed unexpectedly; their cursors stay")
            finally:
                with self._idle:
                    self._outstanding -= len(group)
                    self._idle.notify_all()
            if closing:
                return

    @staticmethod
    def _wait_acked(settlement: Settlement) -> SyncError | None:
        try:
            settlement.batch.wait_until(settlement.deadline, settlement.timeout_s)
        except SyncError as exc:
            return exc
        except Exception as exc:  # a bug: this page fails (its cursor stays), the others go on
            logger.exception("waiting for a page's PUBACKs failed unexpectedly")
            return TransientError(f"waiting for the PUBACKs failed: {exc}")
        return None

    def _settle(self, group: list[Settlement], first_error: SyncError | None) -> None:
        advances: list[CursorAdvance] = []
        owners: list[tuple[Settlement, int]] = []
        for n, settlement in enumerate(group):
            # The oldest was waited for already; the others are mostly acknowledged by now.
            error = first_error if n == 0 else self._wait_acked(settlement)
            if error is not None:
                _guarded(settlement.failed, error)
                continue
            mine = _guarded(settlement.acked)
            if mine is None:
                continue
            owners.append((settlement, len(mine)))
            advances.extend(mine)
        results: list[bool | Exception] = []
        if advances:
            try:
                results = self._cursors.advance_cursors(advances)
            except Exception as exc:  # a store that raises instead of answering per write
                results = [exc] * len(advances)
        at = 0
        for settlement, n in owners:
            _guarded(settlement.written, results[at : at + n])
            at += n


def _guarded(call: Callable[..., R], *args: object) -> R | None:
    """No page's bookkeeping may stop the settler: an unexpected error is logged, the others go on."""
    try:
        return call(*args)
    except Exception:
        logger.exception("settling a page failed unexpectedly; its cursor stays")
        return None
