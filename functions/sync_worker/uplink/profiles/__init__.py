"""Platform profiles: Azure IoT Hub, AWS IoT Core, and any MQTT broker (`generic`, TLS/mTLS, presence).

`build_profile(settings)` returns the one `C2C_PLATFORM_PROFILE` selects; see `settings.py` (cloud
platforms), the worker's `WorkerSettings` (`C2C_MQTT_*`, generic) and `identity.py` for gateway vs
per-device identities.
"""

from functions.sync_worker.uplink.profiles.factory import ProfileConfigError, build_profile

__all__ = ["ProfileConfigError", "build_profile"]
