"""`PublishBatch`: the publishes of one unit of progress (a station's page), tracked to their PUBACKs.

Kept apart from the MQTT connection so the cycle runner, which only creates and waits on batches,
does not import paho. A batch's `wait()` has a deadline: a PUBACK that does not come (broker down,
session lost) fails the batch with a `TransientError` and the station's cursor stays put.
"""

from __future__ import annotations

import threading

from functions.sync_worker.errors import ErrorClass, SyncError, TransientError


class PublishBatch:
    """The publishes of one unit of progress (a station's page), tracked to their PUBACKs.

    Per message only a plain lock is taken (the network thread resolves each PUBACK); the waiter
    is woken once, when nothing is pending any more, instead of a Condition round per message.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = threading.Event()  # set exactly while nothing is pending
        self._settled.set()
        self._pending = 0
        self.error: SyncError | None = None

    def added(self, n: int = 1) -> None:
        """`n` more publishes were queued (the connection calls this before handing them on)."""
        with self._lock:
            self._pending += n
            self._settled.clear()

    def acked(self) -> None:
        """One publish got its PUBACK (called from paho's network thread)."""
        with self._lock:
            self._pending -= 1
            if self._pending == 0:
                self._settled.set()

    def failed(self, error: SyncError) -> None:
        """One publish failed; the batch keeps the first error, or a permanent one over others."""
        with self._lock:
            self._pending -= 1
            if self.error is None or error.error_class is ErrorClass.PERMANENT:
                self.error = error
            if self._pending == 0:
                self._settled.set()

    def wait(self, timeout_s: float) -> None:
        """Block until every publish is resolved; raise the batch's error, or `TransientError`
        when the deadline passes first. Call it after the last publish of the batch was queued."""
        if not self._settled.wait(timeout_s):
            with self._lock:
                pending = self._pending
            if pending > 0:
                raise TransientError(f"{pending} PUBACK(s) missing after {timeout_s:.1f}s")
        if self.error is not None:
            raise self.error
