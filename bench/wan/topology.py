"""A small WAN on this machine: one network namespace per party, joined by veth pairs to a router
namespace whose forwarding path delays the links the benchmark names.

    client (worker, per-run function, Node-RED) --+
    broker (Mosquitto, TLS)                     --+-- router (forwards; delays client<->broker and
    vendor (simulator)                          --+    client<->vendor; counts TCP SYNs per link)
    cache  (Redis)                              --+
    bench  (the driver, the subscriber)         --+

Addresses come from 198.18.0.0/15, the range reserved for network benchmarks (RFC 2544): no
namespace has a route anywhere else, no party reaches another over loopback, and nothing leaves
the machine. `Topology` is a context manager; its teardown (also run first, for a topology a
killed run left behind) kills every process left in its namespaces and deletes them, which
deletes their veth pairs.

Delay: `tc qdisc ... netem` where the kernel has it. This machine's kernel is built without
sch_netem (CONFIG_NET_SCH_NETEM is not set, and there are no loadable modules), so the router
holds each packet of a delayed link in the kernel with iptables' NFQUEUE and a userspace process
(bench/wan/delay.py) gives the ACCEPT verdict after the link's one-way delay: the same constant
per-packet delay netem's `delay` adds, minus its jitter/loss options, which the bench does not use.
The delay in ms rides in the packet's firewall mark, set per link pair in the mangle table.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PREFIX = "c2cwan-"
ROUTER = "router"
#: Leaf namespace -> its /30 subnet's third octet in 198.18.<n>.0/30 (router .1, leaf .2).
LEAVES = {"client": 0, "broker": 1, "vendor": 2, "cache": 3, "bench": 4}
NETWORK = "198.18.0.0/16"
_CLONE_NEWNET = 0x40000000


def address(leaf: str) -> str:
    return f"198.18.{LEAVES[leaf]}.2"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def netem_available() -> tuple[bool, str]:
    """Try a netem qdisc on a throw-away veth pair in a throw-away namespace."""
    probe = f"{PREFIX}probe-{os.getpid()}"
    run("ip", "netns", "del", probe, check=False)
    run("ip", "netns", "add", probe)
    try:
        run("ip", "netns", "exec", probe, "ip", "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
        out = run(
            "ip",
            "netns",
            "exec",
            probe,
            "tc",
            "qdisc",
            "add",
            "dev",
            "probe0",
            "root",
            "netem",
            "delay",
            "1ms",
            check=False,
        )
        return out.returncode == 0, (out.stderr.strip() or "ok")
    finally:
        run("ip", "netns", "del", probe, check=False)


@dataclass
class Link:
    """A delayed path between two leaves: `one_way_ms` each way, so the round trip is twice that."""

    a: str
    b: str
    one_way_ms: int


@dataclass
class Topology:
    links: Sequence[Link]
    #: Namespace names are `<prefix><party>`; teardown removes every namespace with this prefix.
    prefix: str = PREFIX
    #: Processes started in the namespaces, stopped (SIGTERM, then SIGKILL) at teardown.
    started: list[subprocess.Popen] = field(default_factory=list)
    _root_ns: int | None = None
    _lock: IO[str] | None = None

    def __enter__(self) -> Topology:
        # One topology per prefix at a time: a second run would tear the first one's namespaces down.
        self._lock = open(f"/run/{self.prefix.rstrip('-')}.lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"another run holds the {self.prefix}* network namespaces; wait for it") from None
        self.teardown()  # a topology a killed run left behind
        try:
            self.build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()
        if self._lock is not None:
            Path(self._lock.name).unlink(missing_ok=True)
            self._lock.close()  # releases the flock
            self._lock = None

    def ns(self, party: str) -> str:
        return self.prefix + party

    def in_ns(self, party: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns(party), *args, check=check)

    def existing(self) -> list[str]:
        """Namespaces with this topology's prefix that exist now."""
        out = run("ip", "netns", "list").stdout
        return [m.group(1) for m in re.finditer(rf"^({re.escape(self.prefix)}\S+)", out, re.MULTILINE)]

    def build(self) -> None:
        run("ip", "netns", "add", self.ns(ROUTER))
        self.in_ns(ROUTER, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        for leaf, octet in LEAVES.items():
            run("ip", "netns", "add", self.ns(leaf))
            # Each end is created in its own namespace: no name ever exists in the host's namespace.
            outer, inner = f"c2r-{leaf}", f"c2l-{leaf}"
            run(
                "ip",
                "-n",
                self.ns(ROUTER),
                "link",
                "add",
                outer,
                "type",
                "veth",
                "peer",
                "name",
                inner,
                "netns",
                self.ns(leaf),
            )
            self.in_ns(ROUTER, "ip", "addr", "add", f"198.18.{octet}.1/30", "dev", outer)
            self.in_ns(ROUTER, "ip", "link", "set", outer, "up")
            self.in_ns(leaf, "ip", "addr", "add", f"198.18.{octet}.2/30", "dev", inner)
            self.in_ns(leaf, "ip", "link", "set", inner, "up")
            self.in_ns(leaf, "ip", "route", "add", NETWORK, "via", f"198.18.{octet}.1")
            # Up for process-internal use only (paho wakes its loop through a socketpair on 127.0.0.1);
            # every party reaches the others at their 198.18 addresses, through the router.
            self.in_ns(leaf, "ip", "link", "set", "lo", "up")

    def count_rules(self) -> None:
        """Count TCP SYNs per (from, to) leaf pair at the router (rules without a target only count)."""
        for src in LEAVES:
            for dst in LEAVES:
                if src != dst:
                    self.in_ns(
                        ROUTER,
                        "iptables",
                        "-A",
                        "FORWARD",
                        "-i",
                        f"c2r-{src}",
                        "-o",
                        f"c2r-{dst}",
                        "-p",
                        "tcp",
                        "--syn",
                    )

    def delay_rules(self) -> None:
        """Mark each delayed link's packets with their one-way delay (ms) and queue them to delay.py,
        which must be listening on queue 0 first (an unanswered queue drops packets)."""
        for link in self.links:
            for src, dst in ((link.a, link.b), (link.b, link.a)):
                iface = ("-i", f"c2r-{src}", "-o", f"c2r-{dst}")
                mark = ("-j", "MARK", "--set-mark", str(link.one_way_ms))
                self.in_ns(ROUTER, "iptables", "-t", "mangle", "-A", "FORWARD", *iface, *mark)
        self.in_ns(
            ROUTER, "iptables", "-A", "FORWARD", "-m", "mark", "!", "--mark", "0", "-j", "NFQUEUE", "--queue-num", "0"
        )

    def syn_counts(self) -> dict[tuple[str, str], int]:
        """TCP connections opened so far, per (from leaf, to leaf), counted by the router."""
        out = self.in_ns(ROUTER, "iptables", "-S", "FORWARD", "-v").stdout
        pattern = re.compile(r"-i c2r-(\S+) -o c2r-(\S+) -p tcp .*--tcp-flags \S+ SYN -c (\d+)")
        return {(m.group(1), m.group(2)): int(m.group(3)) for m in pattern.finditer(out)}

    def spawn(
        self, leaf: str, args: Sequence[str], *, log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """Start `args` in a namespace; stopped at teardown."""
        from c2c_sync.demo.services import spawn

        handle = open(log, "ab")  # noqa: SIM115 - the child holds it; closed below once it started
        try:
            proc = spawn(["ip", "netns", "exec", self.ns(leaf), *args], stdout=handle, die_with_parent=True, env=env)
        finally:
            handle.close()
        self.started.append(proc)
        return proc

    def enter(self, leaf: str) -> None:
        """Move this process (its calling thread, and threads it starts later) into a namespace."""
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if self._root_ns is None:
            self._root_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open(f"/run/netns/{self.ns(leaf)}", os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.ns(leaf)}")
        finally:
            os.close(fd)

    def leave(self) -> None:
        if self._root_ns is not None:
            ctypes.CDLL("libc.so.6", use_errno=True).setns(self._root_ns, _CLONE_NEWNET)
            os.close(self._root_ns)
            self._root_ns = None

    def teardown(self) -> None:
        self.leave()
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.started.clear()
        for name in self.existing():
            # Anything still running in a namespace was started by this bench (or a killed run of it).
            for pid in run("ip", "netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            deadline = time.monotonic() + 10
            while run("ip", "netns", "pids", name, check=False).stdout.split() and time.monotonic() < deadline:
                time.sleep(0.05)
            run("ip", "netns", "del", name, check=False)


def exit_on_signals() -> None:
    """SIGTERM and SIGINT unwind as KeyboardInterrupt, so `with Topology(...)` tears down on either
    (SIGINT too: a shell starts background jobs with it ignored, which Python would keep)."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


if __name__ == "__main__":  # `python bench/wan/topology.py teardown`: remove a leftover topology by hand
    if sys.argv[1:] == ["teardown"]:
        topology = Topology(links=())
        topology.teardown()
        print("left:", topology.existing())
