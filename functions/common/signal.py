"""The start signal: the only message the trigger sends and the worker acts on.

Versioned and strict (unknown fields are rejected) so that a producer and a consumer of different
releases fail loudly instead of guessing. Both ends import this module.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from functions.common.validation import describe_validation_error

SIGNAL_VERSION = 1
#: Redis pub/sub channel used when the signal transport is Redis instead of SNS/SQS.
REDIS_SIGNAL_CHANNEL = "c2c:signals"

StationId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


class Command(str, Enum):
    START_SYNC = "start_sync"
    STOP_SYNC = "stop_sync"
    SYNC_NOW = "sync_now"
    RELOAD = "reload"


class Source(str, Enum):
    SCHEDULE = "schedule"
    HTTP = "http"
    ALARM = "alarm"
    CLI = "cli"


class StartSignal(BaseModel):
    """`{"v": 1, "command": ..., "id": <uuid>, "issued_at": <ISO-8601 UTC>, "source": ..., "stations": [...]}`"""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = SIGNAL_VERSION
    command: Command
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    issued_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: Source
    stations: list[StationId] | None = Field(default=None, min_length=1, max_length=10_000)

    @field_validator("issued_at")
    @classmethod
    def _must_be_utc(cls, value: datetime) -> datetime:
        # A naive timestamp is ambiguous across hosts; an offset other than UTC is a producer bug.
        if value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None):
            raise ValueError("issued_at must be an ISO-8601 timestamp in UTC (suffix Z or +00:00)")
        return value

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class InvalidSignal(ValueError):
    """A message that is not a valid start signal; `reason` names every offending field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_signal(raw: str | bytes) -> StartSignal:
    """Parse and validate a signal body, raising `InvalidSignal` with a one-line reason."""
    try:
        return StartSignal.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidSignal(describe_validation_error(exc, top_level="body")) from None
