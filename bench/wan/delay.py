"""Hold each queued packet for its link's one-way delay, then let it through (run in the router namespace).

iptables (bench/wan/topology.py) marks a delayed link's packets with the delay in ms and sends
them to NFQUEUE 0; this process receives their metadata (no payload is copied), and a release
thread gives each one the ACCEPT verdict at arrival + delay. The delay is constant per link, so
releasing in arrival order per mark keeps every link's packets in order, as netem's `delay` does.
Prints `ready` once bound; stops on SIGTERM.
"""

from __future__ import annotations

import collections
import signal
import sys
import threading
import time

import fnfqueue

QUEUE = 0
#: Packets the kernel holds for us at most; beyond it it would drop them, so keep it far above a cycle's burst.
MAX_HELD = 65_536


class Releaser:
    def __init__(self) -> None:
        self._lanes: dict[int, collections.deque[tuple[float, fnfqueue.Packet]]] = collections.defaultdict(
            collections.deque
        )
        self._cond = threading.Condition()
        self.held = 0
        self.released = 0

    def hold(self, packet: fnfqueue.Packet) -> None:
        due = time.monotonic() + packet.mark / 1000
        with self._cond:
            self._lanes[packet.mark].append((due, packet))
            self.held += 1
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                ready = []
                next_due = None
                for lane in self._lanes.values():
                    while lane and lane[0][0] <= now:
                        ready.append(lane.popleft()[1])
                    if lane and (next_due is None or lane[0][0] < next_due):
                        next_due = lane[0][0]
                if not ready:
                    self._cond.wait(None if next_due is None else next_due - now)
                    continue
            for packet in ready:
                packet.accept()
            self.released += len(ready)


def main() -> None:
    conn = fnfqueue.Connection(packet_size=4096)
    queue = conn.bind(QUEUE)
    queue.set_mode(0, fnfqueue.COPY_META)
    queue.set_maxlen(MAX_HELD)
    releaser = Releaser()
    threading.Thread(target=releaser.run, name="release", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: conn.close())
    print("ready", flush=True)
    overflows = 0
    while True:
        try:
            for packet in conn:
                releaser.hold(packet)
            break  # closed by SIGTERM
        except fnfqueue.BufferOverflowException:
            # Queue messages were lost: their packets stay unanswered and TCP resends them. Said, not hidden.
            overflows += 1
            print("netlink receive buffer overflow: some packets were lost", file=sys.stderr, flush=True)
    print(f"held {releaser.held} packets, released {releaser.released}, overflows {overflows}", file=sys.stderr)


if __name__ == "__main__":
    main()
