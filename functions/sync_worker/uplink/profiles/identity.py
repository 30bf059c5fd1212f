"""Connection = identity: how a station maps to the platform identity whose connection it uses.

Gateway mode: every station shares one identity (the station id travels in the topic/properties).
Per-device mode: each station is its own device/thing, named by a template such as
`"{station_id}"` or `"ess-{station_id}"`, so the uplink keeps one connection per station.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from functions.sync_worker.errors import PermanentError


class IdentityMode(StrEnum):
    GATEWAY = "gateway"
    PER_DEVICE = "per-device"


@dataclass(frozen=True, slots=True)
class IdentityRule:
    """What the platform accepts as an identity name (Azure device id, AWS thing name/client id)."""

    platform: str
    pattern: re.Pattern[str]
    max_length: int
    description: str

    def validate(self, identity: str) -> str:
        if not identity or len(identity.encode()) > self.max_length or not self.pattern.fullmatch(identity):
            raise PermanentError(
                f"{self.platform}: identity {identity!r} is not valid "
                f"({self.description}, at most {self.max_length} bytes)"
            )
        return identity


@dataclass(frozen=True, slots=True)
class IdentityMapping:
    mode: IdentityMode
    gateway_identity: str | None
    template: str
    rule: IdentityRule

    def __post_init__(self) -> None:
        if self.mode is IdentityMode.GATEWAY:
            if not self.gateway_identity:
                raise PermanentError(f"{self.rule.platform}: gateway mode needs the gateway identity")
            self.rule.validate(self.gateway_identity)
        elif "{station_id}" not in self.template:
            raise PermanentError(
                f"{self.rule.platform}: per-device identity template {self.template!r} must contain {{station_id}}"
            )

    def identity_for(self, station_id: str) -> str:
        if self.mode is IdentityMode.GATEWAY:
            return self.gateway_identity  # type: ignore[return-value]  # checked in __post_init__
        try:
            return self.rule.validate(self.template.format(station_id=station_id))
        except PermanentError as exc:
            raise PermanentError(str(exc), station_id=station_id) from None


class MappedIdentities:
    """`identity_for` and `per_device` for a profile whose `identities` field is an `IdentityMapping`
    (every profile: what differs between platforms is only the mapping's naming rule)."""

    identities: IdentityMapping

    def identity_for(self, station_id: str) -> str:
        return self.identities.identity_for(station_id)

    @property
    def per_device(self) -> bool:
        return self.identities.mode is IdentityMode.PER_DEVICE
