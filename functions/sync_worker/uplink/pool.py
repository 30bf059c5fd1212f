"""A pool of persistent connections, one per identity (per-device mode: one per station/device).

- **Lazy**: a connection is opened the first time its identity publishes, so connections opened
  == identities in use, never stations x cycles.
- **Persistent and independent**: each pooled connection keeps its own supervisor (it reconnects
  on its own, renews its own credentials) and is reused by every later cycle.
- **Bounded**: at most `max_connections` at once. A new identity beyond the bound retires the
  least recently used connection (clean DISCONNECT after its PUBACKs drain; a PUBACK it never
  gets fails that batch as transient, so the reading is retried, not lost). Each retirement is
  logged as a warning: it means the bound is below the identities in use and connections churn.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar

from functions.sync_worker.observability import logger


class Closable(Protocol):
    def close(self, timeout_s: float = ...) -> None: ...


C = TypeVar("C", bound=Closable)

DEFAULT_MAX_CONNECTIONS = 500


class ConnectionPool(Generic[C]):
    def __init__(
        self,
        open_connection: Callable[[str], C],
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        on_retire: Callable[[str, C], None] | None = None,
        retire_timeout_s: float = 5.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.max_connections = max_connections
        self._open = open_connection
        self._on_retire = on_retire
        self._retire_timeout_s = retire_timeout_s
        self._live: OrderedDict[str, C] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    def get(self, identity: str) -> C:
        """The identity's connection, opened on first use; marks it most recently used."""
        victims: list[tuple[str, C]] = []
        with self._lock:
            conn = self._live.get(identity)
            if conn is not None:
                self._live.move_to_end(identity)
                return conn
            while len(self._live) >= self.max_connections:
                victims.append(self._live.popitem(last=False))
            conn = self._open(identity)
            self._live[identity] = conn
        for old_identity, old in victims:  # outside the lock: draining may take a while
            logger.warning(
                "connection pool full; retiring the least recently used connection",
                extra={"retired": old_identity, "for": identity, "max_connections": self.max_connections},
            )
            self._retire(old_identity, old)
        return conn

    def connections(self) -> list[C]:
        with self._lock:
            return list(self._live.values())

    def _retire(self, identity: str, conn: C, timeout_s: float | None = None) -> None:
        try:
            conn.close(timeout_s=self._retire_timeout_s if timeout_s is None else timeout_s)
        finally:
            if self._on_retire is not None:
                self._on_retire(identity, conn)

    def close_all(self, timeout_s: float = 10.0) -> None:
        """Close every connection, in parallel so N devices still shut down within one deadline."""
        with self._lock:
            items = list(self._live.items())
            self._live.clear()
        if not items:
            return
        with ThreadPoolExecutor(max_workers=min(32, len(items)), thread_name_prefix="pool-close") as executor:
            futures = [executor.submit(self._retire, identity, conn, timeout_s) for identity, conn in items]
            for future in futures:
                future.result()
