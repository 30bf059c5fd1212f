"""Platform profiles: Azure IoT Hub, AWS IoT Core, and any MQTT broker (generic with TLS/mTLS).

`build_profile()` returns the one `C2C_PLATFORM_PROFILE` selects; see `settings.py` for every
environment variable and `identity.py` for gateway vs per-device identities.
"""

from functions.sync_worker.uplink.profiles.factory import ProfileConfigError, build_profile

__all__ = ["ProfileConfigError", "build_profile"]
