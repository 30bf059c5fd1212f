"""`PublishBatch`: the publishes of one unit of progress (a station's page), tracked to their PUBACKs.

Kept apart from the MQTT connection so the cycle runner, which only creates and waits on batches,
does not import paho. A batch's `wait()` has a deadline: a PUBACK that does not come (broker down,
session lost) fails the batch with a `TransientError` and the station's cursor stays put.
"""

from __future__ import annotations

from _thread import LockType, allocate_lock
from time import monotonic

from functions.sync_worker.errors import ErrorClass, SyncError, TransientError


class PublishBatch:
    """The publishes of one unit of progress (a station's page), tracked to their PUBACKs.

    Per message only a plain lock is taken (the network thread resolves each PUBACK). The one
    waiter (the station thread that queued the page) blocks on a lock of its own that the last
    resolution releases: one C-level acquire with a timeout, where a `threading.Event` went through
    a Condition (a lock allocated, a waiter list, two more lock rounds) on every page and an
    `Event.set` on every batch created.
    """

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._pending = 0
        #: Held while the waiter waits; released (and dropped) when nothing is pending any more.
        self._waiter: LockType | None = None
        self.error: SyncError | None = None

    def added(self, n: int = 1) -> None:
        """`n` more publishes were queued (the connection calls this before handing them on)."""
        with self._lock:
            self._pending += n

    def acked(self) -> None:
        """One publish got its PUBACK (called from paho's network thread)."""
        with self._lock:
            self._pending -= 1
            if self._pending == 0:
                self._wake()

    def failed(self, error: SyncError) -> None:
        """One publish failed; the batch keeps the first error, or a permanent one over others."""
        with self._lock:
            self._pending -= 1
            if self.error is None or error.error_class is ErrorClass.PERMANENT:
                self.error = error
            if self._pending == 0:
                self._wake()

    def _wake(self) -> None:  # with `_lock` held
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.release()

    def wait(self, timeout_s: float) -> None:
        """Block until every publish is resolved; raise the batch's error, or `TransientError`
        when the deadline passes first. Call it after the last publish of the batch was queued,
        from one thread at a time."""
        self.wait_until(monotonic() + timeout_s, timeout_s)

    def wait_until(self, deadline: float, timeout_s: float | None = None) -> None:
        """`wait` with the deadline as a `time.monotonic()` value (`timeout_s`: what the error names)."""
        with self._lock:
            waiter: LockType | None = None
            if self._pending > 0:
                waiter = allocate_lock()
                waiter.acquire()
                self._waiter = waiter
        if waiter is not None and not waiter.acquire(True, max(0.0, deadline - monotonic())):
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None
                pending = self._pending
            if pending > 0:
                waited = f"after {timeout_s:.1f}s" if timeout_s is not None else "at the deadline"
                raise TransientError(f"{pending} PUBACK(s) missing {waited}")
        if self.error is not None:
            raise self.error
