"""How much memory the worker's state takes in a real redis-server, for sizing the cache node.

    .venv/bin/python bench/redis_memory.py --stations 10000 [--dedupe-ids 2]

Writes what the worker keeps for N stations through the worker's own code (functions/sync_worker/
store.py: the fenced cursor script, the lease and its fencing counter, the heartbeat, a full run
history of RUN_HISTORY_LENGTH cycles) plus dedupe keys (one SET of recently published message
ids per station with a TTL, `--dedupe-ids` ids each: the worker has no dedupe keys yet, so this
is the model a sizing must allow for), then reports redis-server's `used_memory` above an empty
server's and the `used_memory_dataset` figure. Recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from c2c_sync.demo.services import RedisServer
from functions.common.state import RUN_HISTORY_LENGTH, CycleRecord, Heartbeat, StateKeys
from functions.sync_worker.store import Lease, StateStore

DEDUPE_TTL_S = 86_400


def measure(stations: int, dedupe_ids: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="redis-memory-") as workdir:
        server = RedisServer(Path(workdir)).start()
        try:
            client = redis.Redis.from_url(server.url, decode_responses=True)
            baseline = int(client.info("memory")["used_memory"])
            keys = StateKeys.for_env("prod")
            lease = Lease(client, keys, holder=f"worker-{uuid.uuid4()}")
            assert lease.try_acquire()
            store = StateStore(client, keys, lease)
            now = datetime.now(UTC)
            for i in range(stations):
                store.advance_cursor(f"station-{i:05d}", now - timedelta(seconds=i))
            store.write_heartbeat(
                Heartbeat(worker_id=lease.value, fencing_token=lease.token, at=now, mqtt_connected=True)
            )
            for n in range(RUN_HISTORY_LENGTH):
                store.record_cycle(
                    CycleRecord(
                        signal_id=str(uuid.uuid4()),
                        started_at=now,
                        finished_at=now,
                        duration_ms=61_234.5,
                        stations_total=stations,
                        stations_synced=stations - n,
                        stations_failed=n,
                        readings_published=2 * stations,
                        errors_by_class={"transient": n},
                    )
                )
            pipe = client.pipeline(transaction=False)
            for i in range(stations):
                key = f"{keys.prefix}:dedupe:station-{i:05d}"
                pipe.sadd(key, *(str(uuid.uuid4()) for _ in range(dedupe_ids)))
                pipe.expire(key, DEDUPE_TTL_S)
            pipe.execute()
            info = client.info("memory")
            lease.release()
            return {
                "stations": stations,
                "dedupe_ids_per_station": dedupe_ids,
                "keys": client.dbsize(),
                "used_memory_bytes": int(info["used_memory"]) - baseline,
                "used_memory_dataset_bytes": int(info["used_memory_dataset"]),
            }
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--dedupe-ids", type=int, default=2)
    args = parser.parse_args()
    result = measure(args.stations, args.dedupe_ids)
    result["used_memory_mib"] = round(result["used_memory_bytes"] / 2**20, 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
