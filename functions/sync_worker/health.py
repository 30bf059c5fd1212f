"""`python -m functions.sync_worker health`: the ECS container health check.

Healthy means: the worker process is alive, every background loop it needs is running (signal
intake, heartbeat, lease renewer, MQTT supervisors: `dead_loops` empty), its MQTT connection is
up, and its last successful Redis heartbeat is fresher than `HEARTBEAT_STALE_AFTER_S`. The check
runs as a separate process in the container, so it reads the status file the worker rewrites every
heartbeat interval rather than opening its own MQTT or Redis connection (no credentials needed,
nothing to leak).
"""

from __future__ import annotations

import json
import os
import time

from functions.common.state import HEARTBEAT_STALE_AFTER_S


def check(status_file: str, max_age_s: float = HEARTBEAT_STALE_AFTER_S) -> tuple[bool, str]:
    try:
        with open(status_file) as fh:
            status = json.load(fh)
    except FileNotFoundError:
        return False, f"no status file {status_file}: worker not started"
    except (OSError, ValueError) as exc:
        return False, f"status file unreadable: {exc}"
    now = time.time()
    if not _alive(int(status.get("pid", 0))):
        return False, f"worker process {status.get('pid')} is gone"
    if now - float(status.get("at", 0)) > max_age_s:
        return False, f"status not updated for {now - float(status.get('at', 0)):.0f}s"
    dead = status.get("dead_loops") or []
    if dead:
        return False, f"worker loop(s) gone: {', '.join(dead)}"
    if not status.get("lease_held"):
        return False, "standing by: another worker holds the lease"
    if not status.get("mqtt_connected"):
        return False, "MQTT not connected"
    heartbeat_at = status.get("heartbeat_at")
    if heartbeat_at is None:
        return False, "no heartbeat written yet"
    age = now - float(heartbeat_at)
    if age > max_age_s:
        return False, f"heartbeat is {age:.0f}s old (stale after {max_age_s:.0f}s)"
    return True, f"healthy: MQTT connected, heartbeat {age:.0f}s old"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
