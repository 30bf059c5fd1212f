"""The two optional profile capabilities the uplink asks about without widening `PlatformProfile`:

- `per_device` (bool): per-device identities, so no connection is opened before a station needs
  it and "connected" holds vacuously while none is open yet;
- `online_message(identity) -> Will | None`: the retained `online` status published right after
  each connect (its `offline` counterpart is the connection's last will).
"""

from __future__ import annotations

from typing import Any

from functions.sync_worker.uplink.profile import PlatformProfile


def is_per_device(profile: PlatformProfile) -> bool:
    return bool(getattr(profile, "per_device", False))


def publish_online(profile: PlatformProfile, identity: str, client: Any) -> None:
    """Publish the profile's online status on a freshly connected paho `client` (fire and forget:
    a lost status is repaired by the next connect, and the will covers the opposite case)."""
    online = getattr(profile, "online_message", None)
    message = online(identity) if callable(online) else None
    if message is not None:
        client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
