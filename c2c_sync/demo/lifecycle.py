"""Stop everything the demo started, whatever way it ends.

Three layers, because each catches what the others miss: the orchestrator's `try/finally`
(normal end, errors), SIGTERM/SIGHUP turned into an exception in the main thread so that finally
runs (Ctrl-C already is one: KeyboardInterrupt), and `atexit` for an interpreter exit that skipped
both. Children also get PR_SET_PDEATHSIG (see services.spawn) for a demo killed with SIGKILL.
"""

from __future__ import annotations

import atexit
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

#: What `signal.signal` takes and returns: a handler, SIG_DFL/SIG_IGN, or None (set outside Python).
_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Interrupted(BaseException):
    """SIGTERM/SIGHUP received: unwinds like KeyboardInterrupt so every finally block runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Teardown:
    """A LIFO stack of stop actions; `close()` runs each once, even if an earlier one fails."""

    def __init__(self, report: Callable[[str], None] = lambda line: None) -> None:
        self._actions: list[tuple[str, Callable[[], object]]] = []
        self._lock = threading.Lock()
        self._report = report
        self._previous: dict[int, _SignalHandler] = {}
        self.failures: list[str] = []

    def push(self, name: str, action: Callable[[], object]) -> None:
        """Run `action` at close (last pushed, first run); what it returns is ignored."""
        with self._lock:
            self._actions.append((name, action))

    def install(self) -> Teardown:
        atexit.register(self.close)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGHUP):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: object) -> None:
        raise Interrupted(signum)

    def close(self) -> None:
        while True:
            with self._lock:
                if not self._actions:
                    break
                name, action = self._actions.pop()
            try:
                action()
            except BaseException as exc:
                self.failures.append(f"{name}: {exc!r}")
                self._report(f"stopping {name} failed: {exc!r}")
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        atexit.unregister(self.close)
