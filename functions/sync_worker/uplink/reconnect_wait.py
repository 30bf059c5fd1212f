"""The wait before an MQTT reconnect: the backoff's delay, cut short once the broker is back.

A backoff with a 30 s cap spares a broker that stays down, but after a long outage it also leaves
the worker idle for up to 30 s after the broker returned. So while it waits, the supervisor probes
the broker's TCP port about once a second (a TCP connect and close, no MQTT, no TLS: a refused SYN
costs the broker nothing), and when the port was seen closed and then answers again, the wait ends
after a short random spread (a fleet must not arrive in the same instant). A broker that is up but
refusing (bad credentials, overloaded) keeps its port open throughout: it is never probed into a
faster retry and gets the full backoff. Behind a load balancer whose port always answers the probe
never fires and the plain backoff applies.
"""

from __future__ import annotations

import random
import socket
import threading
import time

#: How often the closed port is probed during a backoff wait (each probe jittered by +-50 %).
PROBE_INTERVAL_S = 1.0
#: A probe that gets no answer in this time counts as closed.
PROBE_TIMEOUT_S = 1.0
#: Upper bound of the random spread between seeing the port open and reconnecting.
ARRIVAL_SPREAD_S = 0.3


def port_answers(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_before_reconnect(
    host: str,
    port: int,
    delay_s: float,
    stop: threading.Event,
    *,
    refused: bool = False,
    probe_interval_s: float = PROBE_INTERVAL_S,
    rng: random.Random | None = None,
) -> bool:
    """Wait `delay_s`, or less once the port, closed during the wait, answers again (True then).
    `refused`: the attempt that failed was refused at TCP, so the port is known to have been closed.
    Returns at once when `stop` is set."""
    rng = rng or random.Random()
    deadline = time.monotonic() + delay_s
    # A connection dropped by a broker that is still up (a session taken over, a keep-alive miss)
    # finds the port open here: that is not a return, and the full backoff applies.
    seen_closed = refused or not port_answers(host, port, min(PROBE_TIMEOUT_S, delay_s))
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if stop.wait(min(remaining, probe_interval_s * rng.uniform(0.5, 1.5))):
            return False
        if time.monotonic() >= deadline:
            return False
        if not port_answers(host, port, min(PROBE_TIMEOUT_S, max(0.1, deadline - time.monotonic()))):
            seen_closed = True
        elif seen_closed:
            stop.wait(rng.uniform(0, ARRIVAL_SPREAD_S))
            return True
    return False
