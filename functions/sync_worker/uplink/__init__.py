"""The MQTT uplink: long-lived connections to the IoT platform, one per identity."""
