"""The leanest Python doing the Node-RED flow's job: a floor for what any Python worker can spend.

    .venv/bin/python bench/peers/python_floor.py --vendor-url URL --broker-port N --stations 1000 --lanes 32

Started by peers_bench.py (`--with-floor`) as three more contenders, each a long-lived process
like the worker and Node-RED. Each line on stdin ("cycle") runs one cycle; it prints nothing per cycle: the bench times
it by its messages at the independent subscriber and reads its CPU from outside, as for Node-RED.

What it does per station is what the flow does (bench/peers/nodered.py): one GET of the station's
telemetry since its cursor (following `next_cursor`), one QoS 1 publish per reading with the
worker's payload, the cursor kept in memory; it does not wait for PUBACKs before moving on. How it
does it is the least Python can: one thread, `lanes` non-blocking keep-alive sockets in a
`selectors` loop, the request written as one block, an answer cut by its Content-Length, orjson
for both directions, paho's network thread for the PUBACKs. None of what makes the worker safe is
here: no lease, no cursor store, no PUBACK before the cursor moves, no retries, timeouts, budgets,
digests, metrics or logs. A worker cannot spend less CPU per station than this does.

With `--threads` the lanes are threads with a blocking socket each (the "floor-threads"
contender): the same work on the worker's execution model. With `--redis-url` it also keeps the
guarantee that costs most (the "floor-acked" contender): a station's cursor moves only after the
PUBACKs of all its messages, and the moved cursors are written to Redis in one pipelined HSET per
64 stations (the worker writes them through a fenced script, also grouped). The cycle ends when
every cursor is written.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import paho.mqtt.client as mqtt
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.payload import VALUES

_PATHS = tuple((name, *path.split(".")) for name, path in VALUES.items())


def _framed(buf: bytes) -> tuple[Any, bytes] | None:
    """The first whole answer in `buf` (its JSON body decoded) and what follows it; None until
    the answer is complete (the simulator always sends a Content-Length)."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    at = buf.find(b"Content-Length:", 0, head_end)
    if at < 0:
        at = buf.lower().find(b"content-length:", 0, head_end)
    end = head_end + 4 + int(buf[at + 15 : buf.find(b"\r\n", at)])
    if len(buf) < end:
        return None
    return orjson.loads(buf[head_end + 4 : end]), buf[end:]


def _until() -> str:
    """Now, as the flow's `new Date().toISOString()` sends it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Lane:
    __slots__ = ("buf", "mids", "sock", "station")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.station = ""
        self.mids: list[int] = []  # the station's messages so far (all its pages)


class Floor:
    def __init__(self, args: argparse.Namespace) -> None:
        vendor = urlsplit(args.vendor_url)
        self.host, self.port = vendor.hostname or "127.0.0.1", vendor.port or 80
        self.stations = [f"site-{i:05d}" for i in range(1, args.stations + 1)]
        self.cursors = dict.fromkeys(self.stations, args.since)
        self.head = f" HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nX-Api-Key: {args.api_key}\r\n\r\n".encode()
        self.selector = selectors.DefaultSelector()
        self.lanes = [] if args.threads else [self._connect() for _ in range(args.lanes)]
        self.blocking = [self._connect_blocking() for _ in range(args.lanes)] if args.threads else []
        self.name = args.name
        self.redis = redis.Redis.from_url(args.redis_url) if args.redis_url else None
        self.cursor_key = f"c2c:{args.name}:cursors"
        # With Redis: message id -> station, messages without PUBACK per station, and the stations
        # whose every message is acknowledged (appended by paho's network thread).
        self._lock = threading.Lock()
        self._owner: dict[int, str] = {}
        self._unacked: dict[str, int] = {}
        self._early: set[int] = set()
        self._settled: deque[str] = deque()
        self._acked_to = threading.Condition(self._lock)
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id)
        self.mqtt.max_inflight_messages_set(20)
        if self.redis is not None:
            self.mqtt.on_publish = self._on_publish
        self.mqtt.connect("127.0.0.1", args.broker_port)
        self.mqtt.loop_start()

    def _connect_blocking(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _connect(self) -> _Lane:
        sock = self._connect_blocking()
        sock.setblocking(False)
        lane = _Lane(sock)
        self.selector.register(sock, selectors.EVENT_READ, lane)
        return lane

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        with self._lock:
            station = self._owner.pop(mid, None)
            if station is None:
                self._early.add(mid)  # the PUBACK came before `publish` returned its id
                return
            self._ack(station)

    def _ack(self, station: str) -> None:  # with `_lock` held
        left = self._unacked[station] - 1
        self._unacked[station] = left
        if left == 0:
            self._settled.append(station)
            self._acked_to.notify()

    def _track(self, station: str, mids: list[int]) -> None:
        """A station's messages are all published (its fetch is done): its cursor waits for their PUBACKs."""
        with self._lock:
            self._unacked[station] = self._unacked.get(station, 0) + len(mids) + 1
            for mid in mids:
                if mid in self._early:
                    self._early.discard(mid)
                    self._ack(station)
                else:
                    self._owner[mid] = station
            self._ack(station)  # the +1: nothing settles before every message is tracked

    def _write_settled(self, pending: dict[str, str], *, every: int) -> None:
        """Write the cursors of the acknowledged stations in one pipeline, once `every` are waiting."""
        if len(self._settled) < every:
            return
        assert self.redis is not None
        pipe = self.redis.pipeline(transaction=False)
        while self._settled:
            station = self._settled.popleft()
            pipe.hset(self.cursor_key, station, pending.pop(station))
        pipe.execute()

    def _publish(self, station: str, data: list[dict], mids: list[int], publish: Callable[..., Any]) -> None:
        topic = f"c2c/{self.name}/stations/{station}/telemetry"
        for r in data:
            ts = r["timestamp"].replace("Z", ".000000Z")
            body = {
                "schema": 1,
                "message_id": f"{station}:{ts}",
                "station_id": station,
                "ts": ts,
                "values": {name: r[group][field] for name, group, field in _PATHS},
            }
            mids.append(publish(topic, orjson.dumps(body), qos=1).mid)
        if data:
            self.cursors[station] = data[-1]["timestamp"]

    def cycle_threads(self) -> None:
        """The same cycle on `lanes` threads with a blocking socket each: what thread-per-lane costs."""
        until = _until()
        queue = deque(self.stations)
        publish = self.mqtt.publish

        def lane(sock: socket.socket) -> None:
            buf = b""
            while True:
                try:
                    station = queue.popleft()
                except IndexError:
                    return
                query = self._first(station, until)
                mids: list[int] = []
                while True:
                    sock.sendall(self._request(station, query))
                    while (framed := _framed(buf)) is None:
                        buf += sock.recv(262144)
                    answer, buf = framed
                    self._publish(station, answer["data"], mids, publish)
                    if not answer.get("next_cursor"):
                        break
                    query = self._follow(answer["next_cursor"])

        threads = [threading.Thread(target=lane, args=(sock,)) for sock in self.blocking]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _request(self, station: str, query: str) -> bytes:
        return b"GET /v1/sites/" + station.encode() + b"/telemetry?" + query.encode() + self.head

    def _ask(self, lane: _Lane, station: str, query: str) -> None:
        lane.station = station
        lane.sock.send(self._request(station, query))  # a few hundred bytes: the socket buffer takes them

    def _first(self, station: str, until: str) -> str:
        return f"limit=1000&since={quote(self.cursors[station])}&until={quote(until)}"

    @staticmethod
    def _follow(next_cursor: str) -> str:
        return f"limit=1000&cursor={quote(next_cursor)}"

    def cycle(self) -> None:
        """One cycle on the `selectors` loop: every station asked for, `lanes` at a time."""
        until = _until()
        queue = deque(self.stations)
        busy = 0
        for lane in self.lanes:
            if queue:
                station = queue.popleft()
                self._ask(lane, station, self._first(station, until))
                busy += 1
        publish = self.mqtt.publish
        acked = self.redis is not None
        pending: dict[str, str] = {}  # station -> cursor to write once its PUBACKs are in
        while busy:
            for key, _ in self.selector.select():
                lane = key.data
                lane.buf += lane.sock.recv(262144)
                framed = _framed(lane.buf)
                if framed is None:
                    continue
                answer, lane.buf = framed
                station = lane.station
                self._publish(station, answer["data"], lane.mids, publish)
                if answer.get("next_cursor"):
                    self._ask(lane, station, self._follow(answer["next_cursor"]))
                    continue
                if acked:  # the station's last page: its cursor waits for all its PUBACKs
                    pending[station] = self.cursors[station]
                    self._track(station, lane.mids)
                    self._write_settled(pending, every=64)
                lane.mids = []
                if queue:
                    nxt = queue.popleft()
                    self._ask(lane, nxt, self._first(nxt, until))
                else:
                    busy -= 1
        while acked and pending:
            with self._lock:
                while not self._settled:
                    if not self._acked_to.wait(30):
                        raise TimeoutError(f"{len(pending)} stations without their PUBACKs")
            self._write_settled(pending, every=1)


class FloorProcess:
    """This script as a contender process of the peers bench: `trigger()` starts one cycle."""

    def __init__(
        self,
        *,
        name: str,
        vendor_url: str,
        broker_port: int,
        stations: int,
        lanes: int,
        since: str,
        redis_url: str | None = None,
        threads: bool = False,
    ) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                f"--vendor-url={vendor_url}",
                f"--broker-port={broker_port}",
                f"--stations={stations}",
                f"--lanes={lanes}",
                f"--since={since}",
                f"--name={name}",
                f"--client-id=python-{name}",
                *([f"--redis-url={redis_url}"] if redis_url else []),
                *(["--threads"] if threads else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin, self._stdout = self.proc.stdin, self.proc.stdout
        if self._stdout.readline().strip() != "ready":
            raise RuntimeError(f"python floor did not start (exit {self.proc.poll()})")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def trigger(self) -> None:
        self._stdin.write("cycle\n")
        self._stdin.flush()

    def finished(self) -> None:
        """Its own end of the cycle (the last request answered); read so the pipe never fills."""
        line = self._stdout.readline()
        if not line.startswith("done"):
            raise RuntimeError(f"python floor failed (exit {self.proc.poll()})")

    def stop(self) -> None:
        self._stdin.close()
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vendor-url", required=True)
    parser.add_argument("--api-key", default="sim-key")
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--stations", type=int, required=True)
    parser.add_argument("--lanes", type=int, default=32)
    parser.add_argument("--since", required=True, help="every station's first cursor")
    parser.add_argument("--client-id", default="python-floor")
    parser.add_argument("--threads", action="store_true", help="one thread per lane with blocking sockets")
    parser.add_argument("--name", default="floor", help="the contender's name: its topics and cursor key")
    parser.add_argument("--redis-url", help="keep the cursors there, each moved after its station's PUBACKs")
    args = parser.parse_args()
    floor = Floor(args)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "cycle":
            started = time.perf_counter()
            floor.cycle_threads() if args.threads else floor.cycle()
            print(f"done {time.perf_counter() - started:.3f}", flush=True)


if __name__ == "__main__":
    main()
