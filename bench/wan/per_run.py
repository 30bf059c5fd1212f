"""A per-run sync function: the pattern the sync worker replaces, for the WAN bench to compare with.

Like a warm serverless function, the process stays up between runs, but every run starts from
nothing, as such a function does: it opens a Redis connection and reads the cursors, opens an
HTTP session and lists the stations (page by page), connects to the broker (TCP, TLS, MQTT
CONNECT), fetches every station's readings since its cursor with `--concurrency` requests in
flight, publishes each reading QoS 1 (the same payload as the worker, the same in-flight window),
waits for every PUBACK, writes the cursors, and disconnects from everything.

One run per line `run` on stdin; after each it prints one JSON line (published, stations, seconds).
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt
import redis
import requests
from requests.adapters import HTTPAdapter

from bench.payload import message

API_KEY = {"X-Api-Key": "sim-key"}
PAGE_SIZE = 100


def list_stations(session: requests.Session, vendor: str) -> list[str]:
    stations, page = [], 1
    while True:
        resp = session.get(f"{vendor}/v1/sites", params={"page": page, "page_size": PAGE_SIZE}, timeout=30)
        resp.raise_for_status()
        body = resp.json()
        stations += [site["id"] for site in body["sites"]]
        if page >= body["total_pages"]:
            return stations
        page += 1


def readings(session: requests.Session, vendor: str, station: str, since: str) -> list[dict]:
    out: list[dict] = []
    params: dict[str, str | int] = {"since": since, "limit": 1000}
    while True:
        resp = session.get(f"{vendor}/v1/sites/{station}/telemetry", params=params, timeout=30)
        resp.raise_for_status()
        body = resp.json()
        out += body["data"]
        if not body.get("next_cursor"):
            return out
        params = {"cursor": body["next_cursor"], "limit": 1000}


def connect_mqtt(args: argparse.Namespace) -> mqtt.Client:
    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"c2c-{args.env}", clean_session=True)
    client.tls_set(ca_certs=args.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.max_inflight_messages_set(args.max_inflight)
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.connect(args.mqtt_host, args.mqtt_port)
    client.loop_start()
    if not connected.wait(30):
        raise TimeoutError("broker CONNACK not received")
    return client


def one_run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    cursors_key = f"c2c:{args.env}:cursors"
    store = redis.Redis.from_url(args.redis_url, decode_responses=True)
    # decode_responses=True: keys and values are str (redis-py's types say bytes | str).
    cursors = {str(k): str(v) for k, v in store.hgetall(cursors_key).items()}
    session = requests.Session()
    session.headers.update(API_KEY)
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=args.concurrency))
    stations = list_stations(session, args.vendor_url)
    client = connect_mqtt(args)
    published: list[mqtt.MQTTMessageInfo] = []
    moved: dict[str, str] = {}
    topic = f"c2c/{args.env}/stations/{{}}/telemetry"
    with ThreadPoolExecutor(args.concurrency) as pool:
        futures = {pool.submit(readings, session, args.vendor_url, s, cursors[s]): s for s in stations}
        for future in as_completed(futures):
            station, batch = futures[future], future.result()
            for reading in batch:
                published.append(client.publish(topic.format(station), message(station, reading), qos=1))
            if batch:
                moved[station] = batch[-1]["timestamp"]
    for info in published:
        info.wait_for_publish(60)
        if not info.is_published():
            raise TimeoutError("PUBACK not received")
    if moved:
        store.hset(cursors_key, mapping={station: ts for station, ts in moved.items()})
    client.disconnect()
    client.loop_stop()
    session.close()
    store.close()
    return {"published": len(published), "stations": len(stations), "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vendor-url", required=True)
    parser.add_argument("--mqtt-host", required=True)
    parser.add_argument("--mqtt-port", type=int, default=8883)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--env", default="per-run", help="topic c2c/<env>/..., cursors under c2c:<env>:")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-inflight", type=int, default=20, help="the worker's default C2C_MAX_INFLIGHT")
    args = parser.parse_args()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            print(json.dumps(one_run(args)), flush=True)


if __name__ == "__main__":
    main()
