"""The WAN bench's topology builder (bench/wan/topology.py), fast: parties reach each other only at
their 198.18 addresses through the router, a second run with the same prefix is refused, and teardown
removes every namespace and kills what was started in them — also when the code inside the `with`
block fails.

Needs root (it creates network namespaces, as the bench does); CI runs as root. The delay itself
(NFQUEUE + bench/wan/delay.py) is exercised by `make bench-wan`, not here.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from bench.wan.topology import Link, Topology, address, run

pytestmark = [
    pytest.mark.integration,  # processes in network namespaces
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="builds network namespaces: needs root and iproute2"
    ),
]


def test_client_reaches_the_vendor_through_the_router_and_teardown_on_failure_removes_everything(tmp_path):
    topology = Topology([Link("client", "vendor", 5)], prefix=f"c2ctest{os.getpid()}-")
    server = None
    with pytest.raises(RuntimeError, match="body failed"), topology:
        assert sorted(topology.existing()) == sorted(
            topology.ns(n) for n in ("router", "client", "broker", "vendor", "cache", "bench")
        )
        # A second run with the same prefix refuses to start instead of tearing this one down.
        with pytest.raises(RuntimeError, match="another run"), Topology([], prefix=topology.prefix):
            pass
        assert len(topology.existing()) == 6
        server = topology.spawn(
            "vendor",
            [sys.executable, "-m", "http.server", "--bind", address("vendor"), "18080"],
            log=tmp_path / "server.log",
        )
        fetch = (
            "import urllib.request, time\n"
            "for _ in range(100):\n"
            "    try:\n"
            f"        print(urllib.request.urlopen('http://{address('vendor')}:18080/', timeout=2).status); break\n"
            "    except OSError: time.sleep(0.1)\n"
        )
        assert topology.in_ns("client", sys.executable, "-c", fetch).stdout.strip() == "200"
        # The client has no route but the benchmark range: nothing can leave for another address.
        routes = topology.in_ns("client", "ip", "route").stdout
        assert "default" not in routes and "198.18.0.0/16 via 198.18.0.1" in routes
        raise RuntimeError("body failed")
    assert topology.existing() == []
    assert server is not None and server.poll() is not None
    assert f"c2ctest{os.getpid()}-" not in run("ip", "netns", "list").stdout
