"""The worker's Redis state: the single-active lease with its fencing token, cursors, heartbeat and
run history (key names and record shapes are the shared contract in `functions.common.state`).

Fencing: the lease value is `<holder>:<token>`, the token strictly increasing across acquisitions
(a counter, floored by Redis server time so a restart that lost the counter cannot hand out an old
token again). Every cursor write is a Lua script that first compares the lease value, so a worker
that lost its lease (paused, partitioned, replaced during a rolling deploy, or cut off from Redis
past the TTL) cannot move a cursor even if it still believes it is active.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Generic, Protocol, TypeVar, cast

import redis
from redis.connection import Connection
from redis.exceptions import ConnectionError, NoScriptError, RedisError, ResponseError
from redis.utils import HIREDIS_AVAILABLE

from functions.common.state import (
    DEFAULT_ENDPOINT,
    HEARTBEAT_TTL_S,
    RUN_HISTORY_LENGTH,
    CycleRecord,
    Heartbeat,
    StateKeys,
    as_text,
)
from functions.sync_worker.backoff import Backoff
from functions.sync_worker.observability import logger

# The token is max(counter, Redis server time in ms) + 1: it increases across acquisitions even when
# a Redis restart without persistence (or a failover that lost the last writes) took the counter
# with it. Time alone would repeat within a millisecond, the counter alone would restart at 1.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if tonumber(redis.call('GET', KEYS[2]) or '0') < floor then
  redis.call('SET', KEYS[2], string.format('%d', floor))
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return token
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# One group of fenced writes (see `GroupCommit`), the fence checked once for all of them.
# KEYS: lease, then every hash and digest key the writes name ; ARGV: lease value, then per write
# cursor-hash index, published-hash index (into KEYS), station, cursor, published (either may be ""),
# digest TTL s, digest count, then key-index/digest pairs. Returns -1 when the lease is not ours
# (nothing written), else one reply per write: 1 (cursor moved), 0 (not moved: never backwards), or
# that write's own error (pcall: one write's failure, a hash of the wrong type, leaves the others).
# Per write: its digests first (they say what the broker acknowledged), then the cursor and the
# published-through mark, neither ever moving backwards; a mark the cursor has caught up with is
# dropped (every reading up to the cursor is settled).
_SET_CURSORS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local function write(i)
  local cursors, marks = KEYS[tonumber(ARGV[i])], KEYS[tonumber(ARGV[i + 1])]
  local station, cursor, published = ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  for j = i + 7, i + 5 + 2 * tonumber(ARGV[i + 6]), 2 do
    redis.call('SET', KEYS[tonumber(ARGV[j])], ARGV[j + 1], 'EX', ARGV[i + 5])
  end
  local moved = 0
  local old = redis.call('HGET', cursors, station)
  if cursor ~= '' and ((not old) or old < cursor) then
    redis.call('HSET', cursors, station, cursor)
    old = cursor
    moved = 1
  end
  local through = redis.call('HGET', marks, station)
  if published ~= '' and ((not through) or through < published) then
    through = published
    redis.call('HSET', marks, station, published)
  end
  if through and old and through <= old then redis.call('HDEL', marks, station) end
  return moved
end
local replies = {}
local i = 2
while i <= #ARGV do
  local ok, reply = pcall(write, i)
  if not ok and type(reply) ~= 'table' then reply = {err = tostring(reply)} end
  replies[#replies + 1] = reply
  i = i + 7 + 2 * tonumber(ARGV[i + 6])
end
return replies
"""

# KEYS: lease, cursors ; ARGV: lease value, then field/value pairs. Only into an empty hash: a
# restore never overwrites what a cycle has written since.
#: Separates a checkpoint field's hash suffix from its station id (see `StateStore._checkpoint_field`).
_US = "\x1f"

# KEYS: lease, then the hashes to fill ; ARGV: lease value, then key-index/field/value triples (the
# index into KEYS). Restores only into a Redis that lost every one of them, never over live cursors.
_RESTORE_CURSORS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
for k = 2, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 then return 0 end
end
for i = 2, #ARGV, 3 do
  redis.call('HSET', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
return (#ARGV - 1) / 3
"""

# The vendor calls of one group (see `GroupCommit`), each taken from every budget it draws on, or
# from none: all of a call's budgets are pruned and checked before any is taken, so a call refused
# by one budget (a site's) spends nothing of another (the account's). Redis time, so every worker
# counts alike. KEYS: every budget sorted set of the group ; ARGV per call: its budget count, then
# key-index/calls/period-ms triples, then its member. One reply per call, in order: 1 taken, 0
# refused, or that call's own error.
_TAKE_CALLS = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local function take(i, k)
  for j = i + 1, i + 3 * k, 3 do
    local key = KEYS[tonumber(ARGV[j])]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', ms - tonumber(ARGV[j + 2]))
    if redis.call('ZCARD', key) >= tonumber(ARGV[j + 1]) then return 0 end
  end
  for j = i + 1, i + 3 * k, 3 do
    local key = KEYS[tonumber(ARGV[j])]
    redis.call('ZADD', key, ms, ARGV[i + 3 * k + 1])
    redis.call('PEXPIRE', key, ARGV[j + 2])
  end
  return 1
end
local replies = {}
local i = 1
while i <= #ARGV do
  local k = tonumber(ARGV[i])
  local ok, reply = pcall(take, i, k)
  if not ok and type(reply) ~= 'table' then reply = {err = tostring(reply)} end
  replies[#replies + 1] = reply
  i = i + 3 * k + 2
end
return replies
"""

_Pack = Callable[[tuple[str | int, ...]], bytes]
_HIREDIS_PACK: _Pack | None = None
if HIREDIS_AVAILABLE:  # redis-py's connections pack with hiredis then
    import hiredis

    _HIREDIS_PACK = cast(_Pack, hiredis.pack_command)

CURSOR_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

T = TypeVar("T")


class LeaseLost(RuntimeError):
    """This worker no longer holds the lease: it must stop cycling and write nothing."""


def connect_redis(url: str, password: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        password=password,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        decode_responses=True,
    )


class ScriptCall(Protocol):
    """A Lua script called with its keys and arguments (`DirectScript`, or redis-py's `Script`)."""

    def __call__(self, keys: Sequence[str] = ..., args: Sequence[str | int] = ...) -> Any: ...


class DirectCommands:
    """Commands sent on connections kept here, outside `Redis.execute_command`.

    For every command redis-py's client borrows a connection from its pool and polls its socket
    (a connection handed back with unread data must not be reused), runs its OpenTelemetry hooks
    (they look for a meter provider on every call even when none is configured), goes through its
    deprecation and retry wrappers and puts the connection back. For the lanes' one script call
    per group of cursor writes that plumbing was most of the write's CPU (bench/RESULTS.md). Here a
    connection is borrowed from the client's pool once and kept (one per thread sending at the same
    time; the pool still owns it, so `Redis.close()` closes it), a command is packed once, then sent
    and read under the connection's own `Retry` (the client's: same errors, attempts and backoff),
    so TLS, AUTH, timeouts and reconnecting stay redis-py's (`Connection.send_packed_command`
    connects a connection that a failure disconnected). Only commands answered in one reply whose
    raw form is what the caller wants (no response callbacks: EVALSHA, MGET).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._idle: list[Connection] = []  # list.pop/append are atomic: no lock on the hot path
        # The packer redis-py's connections use (when the client brings none of its own): hiredis's,
        # called without the serializer's per-argument pass (2 of its 3 us per script call).
        custom = "command_packer" in self._pool.connection_kwargs
        self._hiredis_pack = None if custom else _HIREDIS_PACK

    def script(self, text: str) -> DirectScript:
        return DirectScript(self, text)

    def execute(self, *args: str | int) -> Any:
        """One command's reply (an error reply raised as redis-py raises it, NOSCRIPT included)."""
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._pool.get_connection()
        try:
            packed = [self._hiredis_pack(args)] if self._hiredis_pack is not None else list(conn.pack_command(*args))
            return self._round_trip(conn, packed)
        finally:
            if conn.should_reconnect():
                conn.disconnect()
            self._idle.append(conn)

    @staticmethod
    def _round_trip(conn: Connection, packed: list[bytes]) -> Any:
        kept = conn.is_connected

        def attempt() -> Any:
            nonlocal kept
            if kept:
                # A kept connection the server closed while it sat idle (a restart, a failover, an
                # idle timeout) fails on first use; the pool would have found that out by polling
                # before sending. Reconnect at once, as the pool does, not after a retry backoff.
                kept = False
                try:
                    return _send_read(conn, packed)
                except ConnectionError:
                    pass
            return _send_read(conn, packed)

        return conn.retry.call_with_retry(attempt, lambda _error: conn.disconnect())


def _send_read(conn: Connection, packed: list[bytes]) -> Any:
    try:
        conn.send_packed_command(packed)
        return conn.read_response()
    except ResponseError:  # the whole reply was read: the connection stays usable
        raise
    except BaseException:
        # Whatever else interrupted the round trip may have left a reply unread on the socket.
        conn.disconnect()
        raise


class DirectScript:
    """A Lua script called by EVALSHA through `DirectCommands`, loaded on NOSCRIPT (Redis restarted
    or flushed its scripts) and called again; `script(keys=..., args=...)` as redis-py's `Script`."""

    def __init__(self, commands: DirectCommands, script: str) -> None:
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self._commands = commands

    def __call__(self, keys: Sequence[str] = (), args: Sequence[str | int] = ()) -> Any:
        try:
            return self._commands.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.sha = self._commands.execute("SCRIPT", "LOAD", self.script)
            return self._commands.execute("EVALSHA", self.sha, len(keys), *keys, *args)


@lru_cache(maxsize=512)
def format_cursor(ts: datetime) -> str:
    # Cached: the stations of one cycle mostly move their cursors to the same instant (the window's
    # end). `isoformat` pads the year to four digits, as the cursor's fixed width needs.
    return ts.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_cursor(value: str) -> datetime:
    # `fromisoformat` is C and 40x faster than `strptime` (every cursor is read once per cycle);
    # the shape check keeps it as strict as the format: nothing else is a cursor.
    if len(value) != 27 or value[-1] != "Z" or value[10] != "T":
        raise ValueError(f"not a cursor ({CURSOR_FORMAT}): {value!r}")
    return datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class CursorAdvance:
    """What the cycle asks of one (station, endpoint) after its page's PUBACKs: move the cursor to
    `ts`, mark what was published past it, remember the payload digests of what it sent."""

    station_id: str
    ts: datetime | None
    endpoint: str = DEFAULT_ENDPOINT
    published_through: datetime | None = None
    digests: Sequence[tuple[str, str]] = ()
    digest_ttl_s: int = 0


class CursorWrite:
    """One lane's fenced write: its cursor and published-through mark for one (station, endpoint),
    and the digests of what its page published (all three after the page's PUBACKs)."""

    __slots__ = ("cursor", "digest_ttl_s", "digests", "lease_value", "marks", "published", "station", "table")

    def __init__(
        self,
        lease_value: str,
        table: str,
        marks: str,
        station: str,
        cursor: str,
        published: str,
        digests: Sequence[tuple[str, str]] = (),
        digest_ttl_s: int = 0,
    ) -> None:
        self.lease_value, self.table, self.marks, self.station = lease_value, table, marks, station
        self.cursor, self.published = cursor, published
        self.digests, self.digest_ttl_s = digests, digest_ttl_s


#: A write's outcome when the lease value it carries is no longer the lease's (nothing written).
FENCED = -1


def cursor_group(script: ScriptCall, lease_key: str, writes: list[CursorWrite]) -> list[object]:
    """Every write of a group in one script call per lease value (one call, but for a group that
    spans a re-acquisition): its own outcome for each, 1 moved, 0 not moved, `FENCED`, or an error."""
    outcomes: list[object] = [None] * len(writes)
    by_lease: dict[str, list[int]] = {}
    for n, w in enumerate(writes):
        by_lease.setdefault(w.lease_value, []).append(n)
    for lease_value, members in by_lease.items():
        index: dict[str, int] = {}  # key name -> its KEYS index (1-based; KEYS[1] is the lease)
        args: list[str | int] = [lease_value]
        for n in members:
            w = writes[n]
            table = index.setdefault(w.table, len(index) + 2)
            marks = index.setdefault(w.marks, len(index) + 2)
            args += [table, marks, w.station, w.cursor, w.published, w.digest_ttl_s, len(w.digests)]
            for digest_key, digest in w.digests:
                args += [index.setdefault(digest_key, len(index) + 2), digest]
        try:
            # The script is loaded on NOSCRIPT (Redis restarted or flushed its scripts).
            replies = script(keys=[lease_key, *index], args=args)
        except Exception as exc:  # the round trip failed: it concerns every write it carried
            replies = [exc] * len(members)
        if not isinstance(replies, list):
            replies = [FENCED if int(replies) < 0 else replies] * len(members)
        for n, reply in zip(members, replies, strict=True):
            outcomes[n] = reply
    return outcomes


#: One vendor call's budgets: `(sorted set key, calls, period ms)` for each.
CallBudgets = Sequence[tuple[str, int, int]]


def take_call_group(script: ScriptCall, calls: Sequence[CallBudgets]) -> list[object]:
    """Every vendor call of a group taken in one script call, in order: its own outcome for each,
    1 taken, 0 refused, or an error."""
    index: dict[str, int] = {}  # key name -> its KEYS index (1-based)
    args: list[str | int] = []
    for budgets in calls:
        args.append(len(budgets))
        for key, limit, period_ms in budgets:
            args += [index.setdefault(key, len(index) + 1), limit, period_ms]
        args.append(uuid.uuid4().hex)
    # The script is loaded on NOSCRIPT; an exception reaches every call (`GroupCommit`).
    replies = script(keys=list(index), args=args)
    return list(replies)


class GroupCommit(Generic[T]):
    """Runs one call for many threads: the items that arrive while a round trip is in flight are
    sent together as the next one (group commit).

    Each station lane writes its fenced cursor after its page's PUBACKs and waits for the answer;
    lanes finishing together share one round trip, and one script call, instead of taking one
    each: per station, redis-py packed, sent and parsed a command and Redis ran a script, which
    was most of the worker's CPU for Redis. Each item still gets its own result, or its own error
    (a write's script error or a connection error reaches exactly the items it concerns), and none
    returns before it is answered, so "cursor only after the PUBACK, and the lane knows whether it
    moved" holds. A lane waits at most for the round trip in flight and its own, as before.

    Each waiting lane blocks on a lock of its own, released once when its item is answered or when
    it is its turn to send (the first item queued during a round trip sends the next one): with a
    condition variable every waiter woke at every answer, those still queued only to wait again.
    """

    def __init__(self, send: Callable[[list[T]], list[object]]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._pending: list[_Pending[T]] = []
        self._flushing = False

    def run(self, item: T) -> object:
        outcome = self.run_many([item])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def run_many(self, items: Sequence[T]) -> list[object]:
        """Every item's outcome, or its error as a value (never raised): the items join the next
        round trip together, as if each came from a thread of its own."""
        mine = [_Pending(item) for item in items]
        if not mine:
            return []
        first = mine[0]  # queued together, so always sent together: this thread waits on the first
        with self._lock:
            self._pending.extend(mine)
            sending = not self._flushing
            self._flushing = True
        if not sending:
            first.wake.acquire()
        if not first.done:
            # This thread sends what is pending (its own items first) while others queue.
            with self._lock:
                batch, self._pending = self._pending, []
            try:
                self._flush(batch)
            finally:
                for p in batch:
                    if not p.done:  # `_flush` itself failed before answering it
                        p.outcome, p.done = RuntimeError("the group's round trip failed unanswered"), True
                        p.wake.release()
                with self._lock:
                    following = self._pending[0] if self._pending else None
                    self._flushing = following is not None
                if following is not None:
                    following.wake.release()  # its turn: it sends everything queued meanwhile
        return [p.outcome for p in mine]

    def _flush(self, batch: list[_Pending[T]]) -> None:
        try:
            outcomes = self._send([p.item for p in batch])
            if len(outcomes) != len(batch):  # then no answer can be matched to its item
                raise RuntimeError(f"{len(outcomes)} answers for a group of {len(batch)}")
        except Exception as exc:
            outcomes = [exc] * len(batch)
        for p, outcome in zip(batch, outcomes, strict=True):
            p.outcome, p.done = outcome, True
            p.wake.release()


class _Pending(Generic[T]):
    __slots__ = ("done", "item", "outcome", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.outcome: object = None
        self.wake = threading.Lock()  # held until this item is answered or its thread is to send
        self.wake.acquire()


class Lease:
    """Single-active-worker lease, renewed by a background thread while held.

    Each acquisition gets its own renewer, bound to that acquisition's value: a renewer still
    blocked on an unreachable Redis when the lease expired cannot renew or drop a later one.
    """

    def __init__(self, client: redis.Redis, keys: StateKeys, holder: str, ttl_s: float = 30.0) -> None:
        self.client = client
        self.keys = keys
        self.holder = holder
        self.ttl_ms = int(ttl_s * 1000)
        #: The token of the latest acquisition (kept after the lease is lost, for logs and the heartbeat).
        self.token: int | None = None
        self._lock = threading.Lock()
        self._value: str | None = None  # `<holder>:<token>` while held
        self._valid_until = 0.0
        self._renewal_stop: threading.Event | None = None
        self._acquire = client.register_script(_ACQUIRE)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)
        self._renewer: threading.Thread | None = None

    @property
    def held(self) -> bool:
        # Past the TTL without a confirmed renewal we must assume another worker may hold it.
        return self._value is not None and time.monotonic() < self._valid_until

    @property
    def value(self) -> str:
        value = self._value
        if value is None or not self.held:
            raise LeaseLost("lease not held")
        return value

    def try_acquire(self) -> bool:
        started = time.monotonic()
        token = int(self._acquire(keys=[self.keys.lease, self.keys.fencing_counter], args=[self.holder, self.ttl_ms]))
        if token == 0:
            return False
        value = f"{self.holder}:{token}"
        stop = threading.Event()
        with self._lock:
            if self._renewal_stop is not None:
                self._renewal_stop.set()
            self.token = token
            self._value = value
            self._valid_until = started + self.ttl_ms / 1000
            self._renewal_stop = stop
        self._renewer = threading.Thread(target=self._renew_loop, args=(value, stop), name="lease-renewer", daemon=True)
        self._renewer.start()
        logger.info("lease acquired", extra={"holder": self.holder, "fencing_token": token})
        return True

    def wait_acquire(self, stop: threading.Event, poll_s: float = 1.0) -> bool:
        """Block until the lease is ours or `stop` is set. Survives Redis being down."""
        backoff = Backoff(base_s=0.2, cap_s=5.0)
        logged = False
        while not stop.is_set():
            try:
                if self.try_acquire():
                    return True
                if not logged:
                    logger.info("standing by: another worker holds the lease", extra={"holder": self.current_holder()})
                    logged = True
                stop.wait(poll_s)
                backoff.reset()
            except RedisError as exc:
                delay = backoff.next_delay()
                logger.warning(
                    "redis unavailable while acquiring the lease",
                    extra={"error": str(exc), "retry_in_s": round(delay, 2)},
                )
                stop.wait(delay)
        return False

    def loops(self) -> dict[str, bool]:
        """The renewer of the lease while it is held (without it the lease would lapse unnoticed)."""
        if not self.held:
            return {}
        renewer = self._renewer
        return {"lease-renewer": renewer is not None and renewer.is_alive()}

    def current_holder(self) -> str | None:
        holder = self.client.get(self.keys.lease)
        return None if holder is None else as_text(holder)

    def _renew_loop(self, value: str, stop: threading.Event) -> None:
        interval = self.ttl_ms / 1000 / 3
        while not stop.wait(interval):
            started = time.monotonic()
            try:
                ok = int(self._extend(keys=[self.keys.lease], args=[value, self.ttl_ms]))
            except RedisError as exc:
                if time.monotonic() >= self._valid_until:
                    self._lose(value, "redis unreachable until the lease expired")
                    return
                logger.warning("lease renewal failed; retrying", extra={"error": str(exc)})
                continue
            if not ok:
                # Gone (expired, or a Redis restart without it) or another worker's now.
                self._lose(value, "lease key no longer ours")
                return
            with self._lock:
                if self._value != value:
                    return
                self._valid_until = started + self.ttl_ms / 1000

    def drop(self, why: str) -> None:
        """A fenced write found the lease gone before the renewer did (Redis restarted empty): this
        worker stops acting as the holder now instead of at the next renewal."""
        value = self._value
        if value is not None:
            self._lose(value, why)

    def _lose(self, value: str, why: str) -> None:
        with self._lock:
            if self._value != value:  # a later acquisition replaced this one
                return
            self._value = None
        logger.error("lease lost; this worker stops cycling", extra={"reason": why, "fencing_token": self.token})

    def release(self) -> None:
        with self._lock:
            value, self._value = self._value, None
            if self._renewal_stop is not None:
                self._renewal_stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(2)
        if value is not None:
            try:
                self._release(keys=[self.keys.lease], args=[value])
                logger.info("lease released", extra={"fencing_token": self.token})
            except RedisError as exc:
                logger.warning("lease release failed; it expires by itself", extra={"error": str(exc)})


class StateStore:
    """Cursors (fenced), heartbeat and run history."""

    def __init__(self, client: redis.Redis, keys: StateKeys, lease: Lease | None) -> None:
        self.client = client
        self.keys = keys
        self.lease = lease
        # The lanes' writes, budget takes and digest reads skip the client's per-command plumbing.
        self._direct = DirectCommands(client)
        self._set_cursors = self._direct.script(_SET_CURSORS)
        self._cursor_writes: GroupCommit[CursorWrite] = GroupCommit(
            lambda writes: cursor_group(self._set_cursors, keys.lease, writes)
        )
        self._restore_cursors = client.register_script(_RESTORE_CURSORS)
        self._take_calls = self._direct.script(_TAKE_CALLS)
        self._call_budgets: GroupCommit[CallBudgets] = GroupCommit(
            lambda calls: take_call_group(self._take_calls, calls)
        )

    def cursors(self, endpoint: str = DEFAULT_ENDPOINT) -> dict[str, datetime]:
        raw = self.client.hgetall(self.keys.cursors_of(endpoint))
        return {as_text(station): parse_cursor(as_text(value)) for station, value in raw.items()}

    def _cursor_hashes(self, endpoints: Sequence[str]) -> list[str]:
        """Every hash a checkpoint copies: each endpoint's cursors and what was published past them."""
        hashes: list[str] = []
        for endpoint in dict.fromkeys(endpoints):
            hashes += [self.keys.cursors_of(endpoint), self.keys.published_through(endpoint)]
        return hashes

    def _checkpoint_field(self, hash_key: str, field: str) -> str:
        """A field of the default cursor hash is its station id as it always was; a field of another
        hash is `<US><key suffix><US><station>` (US: the ASCII unit separator, which starts no station
        id a vendor lists), so any station id, `|` and `:` included, comes back unchanged."""
        suffix = hash_key.removeprefix(self.keys.cursors)
        return f"{_US}{suffix}{_US}{field}" if suffix else field

    def raw_cursors(self, endpoints: Sequence[str] = (DEFAULT_ENDPOINT,)) -> dict[str, str]:
        """The cursor hashes of `endpoints` as stored, field for field (what the checkpoint copies):
        the default endpoint's cursors under their station ids, the others as `_checkpoint_field` names them."""
        hashes = self._cursor_hashes(endpoints)
        pipe = self.client.pipeline(transaction=False)
        for key in hashes:
            pipe.hgetall(key)
        copied: dict[str, str] = {}
        for key, raw in zip(hashes, pipe.execute(), strict=True):
            for field, value in raw.items():
                copied[self._checkpoint_field(key, as_text(field))] = as_text(value)
        return copied

    def cursor_count(self, endpoints: Sequence[str] = (DEFAULT_ENDPOINT,)) -> int:
        """Cursors held over `endpoints` (0 when Redis lost them all, or before a first cycle)."""
        pipe = self.client.pipeline(transaction=False)
        for endpoint in dict.fromkeys(endpoints):
            pipe.hlen(self.keys.cursors_of(endpoint))
        return sum(int(n) for n in pipe.execute())

    def restore_cursors(self, cursors: dict[str, str]) -> int:
        """Write checkpointed fields (`raw_cursors`' naming) back into their hashes, fenced like every
        cursor write and only while all those hashes are empty; returns how many fields."""
        if self.lease is None:
            raise LeaseLost("no lease")
        keys: list[str] = [self.keys.lease]
        index: dict[str, int] = {}
        args: list[str | int] = [self.lease.value]
        for name, value in cursors.items():
            if name.startswith(_US):
                _, suffix, station = name.split(_US, 2)
                hash_key = f"{self.keys.cursors}{suffix}"
            else:
                station, hash_key = name, self.keys.cursors
            if hash_key not in index:
                keys.append(hash_key)
                index[hash_key] = len(keys)
            args += [index[hash_key], station, value]
        result = int(self._restore_cursors(keys=keys, args=args))
        if result < 0:
            raise LeaseLost(f"fencing token {self.lease.token} is stale; cursors not restored")
        return result

    def published_through(self, endpoint: str = DEFAULT_ENDPOINT) -> dict[str, datetime]:
        raw = self.client.hgetall(self.keys.published_through(endpoint))
        return {as_text(station): parse_cursor(as_text(value)) for station, value in raw.items()}

    def advance_cursor(
        self,
        station_id: str,
        ts: datetime | None,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        published_through: datetime | None = None,
        digests: Sequence[tuple[str, str]] = (),
        digest_ttl_s: int = 0,
    ) -> bool:
        """Move one station's cursor (and what was published past it) forward, and remember the
        digests published under their message ids for `digest_ttl_s`, in one fenced write shared
        with the lanes writing at the same time; True when the cursor moved (False: it was already
        there or further). `LeaseLost` if our fencing token is no longer current (nothing written)."""
        advance = CursorAdvance(station_id, ts, endpoint, published_through, digests, digest_ttl_s)
        outcome = self.advance_cursors([advance])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def advance_cursors(self, advances: Sequence[CursorAdvance]) -> list[bool | Exception]:
        """`advance_cursor` for several (station, endpoint)s in one shared round trip; each gets its
        own outcome, an error (`LeaseLost`, a `RedisError`) returned in its place, not raised."""
        if self.lease is None:
            return [LeaseLost("no lease") for _ in advances]
        try:
            lease_value, token = self.lease.value, self.lease.token
        except LeaseLost as exc:
            return [exc for _ in advances]
        writes = [
            CursorWrite(
                lease_value,
                self.keys.cursors_of(a.endpoint),
                self.keys.published_through(a.endpoint),
                a.station_id,
                format_cursor(a.ts) if a.ts is not None else "",
                format_cursor(a.published_through) if a.published_through is not None else "",
                [(self.keys.seen(message_id), digest) for message_id, digest in a.digests],
                a.digest_ttl_s,
            )
            for a in advances
        ]
        results: list[bool | Exception] = []
        for advance, outcome in zip(advances, self._cursor_writes.run_many(writes), strict=True):
            if outcome == FENCED:
                results.append(LeaseLost(f"fencing token {token} is stale; cursor of {advance.station_id} not written"))
            elif isinstance(outcome, Exception):
                results.append(outcome)
            else:
                results.append(outcome == 1)
        return results

    def take_call(self, budgets: Sequence[tuple[str, int, float]]) -> bool:
        """Reserve one vendor call in every budget `(counter, calls, period_s)` it draws on, or in
        none; False when any of them is spent."""
        if not budgets:
            return True
        # Lanes asking at the same time share one script call (and round trip), as cursor writes do.
        mine = [(self.keys.call_budget(counter), calls, int(period_s * 1000)) for counter, calls, period_s in budgets]
        return self._call_budgets.run(mine) == 1

    def seen_digests(self, message_ids: list[str]) -> list[str | None]:
        """The payload digest last published under each id (None: never, or forgotten)."""
        if not message_ids:
            return []
        values = self._direct.execute("MGET", *[self.keys.seen(m) for m in message_ids])
        return [None if v is None else as_text(v) for v in values]

    def write_heartbeat(self, heartbeat: Heartbeat) -> None:
        self.client.set(self.keys.heartbeat, heartbeat.model_dump_json(), ex=HEARTBEAT_TTL_S)

    def read_heartbeat(self) -> Heartbeat | None:
        raw = self.client.get(self.keys.heartbeat)
        return Heartbeat.model_validate_json(raw) if raw else None

    def record_cycle(self, record: CycleRecord) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(self.keys.history, record.model_dump_json())
        pipe.ltrim(self.keys.history, 0, RUN_HISTORY_LENGTH - 1)
        pipe.execute()

    def history(self) -> list[CycleRecord]:
        return [CycleRecord.model_validate_json(r) for r in self.client.lrange(self.keys.history, 0, -1)]


class MemoryState:
    """Cursors kept in memory for `--dry-run`: reads nothing from Redis, writes nothing anywhere."""

    def __init__(self) -> None:
        self._cursors: dict[tuple[str, str], datetime] = {}
        self._published: dict[tuple[str, str], datetime] = {}
        self._seen: dict[str, str] = {}
        self._calls: dict[str, list[float]] = {}

    def cursors(self, endpoint: str = DEFAULT_ENDPOINT) -> dict[str, datetime]:
        return {sid: ts for (ep, sid), ts in self._cursors.items() if ep == endpoint}

    def published_through(self, endpoint: str = DEFAULT_ENDPOINT) -> dict[str, datetime]:
        return {sid: ts for (ep, sid), ts in self._published.items() if ep == endpoint}

    def advance_cursor(
        self,
        station_id: str,
        ts: datetime | None,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        published_through: datetime | None = None,
        digests: Sequence[tuple[str, str]] = (),
        digest_ttl_s: int = 0,
    ) -> bool:
        key = (endpoint, station_id)
        self._seen.update(digests)
        moved = False
        if ts is not None:
            old = self._cursors.get(key)
            moved = old is None or ts > old
            self._cursors[key] = ts if old is None else max(ts, old)
        if published_through is not None:
            self._published[key] = max(published_through, self._published.get(key, published_through))
        return moved

    def advance_cursors(self, advances: Sequence[CursorAdvance]) -> list[bool | Exception]:
        return [
            self.advance_cursor(
                a.station_id,
                a.ts,
                endpoint=a.endpoint,
                published_through=a.published_through,
                digests=a.digests,
                digest_ttl_s=a.digest_ttl_s,
            )
            for a in advances
        ]

    def take_call(self, budgets: Sequence[tuple[str, int, float]]) -> bool:
        now = time.monotonic()
        live = {c: [t for t in self._calls.get(c, []) if t > now - period_s] for c, _, period_s in budgets}
        self._calls.update(live)
        if any(len(live[c]) >= calls for c, calls, _ in budgets):
            return False
        for counter, _, _ in budgets:
            live[counter].append(now)
        return True

    def seen_digests(self, message_ids: list[str]) -> list[str | None]:
        return [self._seen.get(m) for m in message_ids]

    def record_cycle(self, record: CycleRecord) -> None:
        pass
