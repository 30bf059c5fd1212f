"""The start signal: the only message the trigger sends and the worker acts on.

Versioned and strict (unknown fields are rejected) so that a producer and a consumer of different
releases fail loudly instead of guessing. Both ends import this module.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from functions.common.validation import describe_validation_error

SIGNAL_VERSION: Literal[1] = 1
#: Redis pub/sub channel used when the signal transport is Redis instead of SNS/SQS.
REDIS_SIGNAL_CHANNEL = "c2c:signals"

#: Largest signal body either transport accepts: SNS's message limit (the trigger publishes through
#: SNS), far above a signal naming 10,000 stations. A bigger body is refused before it is parsed.
MAX_SIGNAL_BYTES = 256 * 1024

#: Characters of a station id: ASCII letters and digits plus `- . % _ * ! ( ) : = @ $ '`, at most
#: 128. That is the device-id alphabet of Azure IoT Hub (per-device mode makes the station id a device
#: id) without `?` and `,`, and it holds real vendor ids such as `NE=33554000` or `plant:7`. Left out
#: on purpose: `/ + #` (the id is one level of an MQTT topic and must never be a separator or a
#: wildcard), `,` (the separator of C2C_STATIONS and of vendors' batched id lists), whitespace and
#: control characters (log lines, HTTP headers), `"` and backslash (quoting), `? & { }` (URL
#: queries and the path/topic templates the id is put into) and anything outside ASCII (one
#: spelling per id across Redis, MQTT and the vendor API).
STATION_ID_PATTERN = r"^[A-Za-z0-9_.%*!():=@$'-]+$"
StationId = Annotated[str, Field(min_length=1, max_length=128, pattern=STATION_ID_PATTERN)]
#: Signals dated before this are refused: a producer sending 0 or a small epoch number is a bug.
EARLIEST_ISSUED_AT = datetime(2020, 1, 1, tzinfo=UTC)


class Command(StrEnum):
    START_SYNC = "start_sync"
    STOP_SYNC = "stop_sync"
    SYNC_NOW = "sync_now"
    RELOAD = "reload"


class Source(StrEnum):
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

    @field_validator("v", mode="before")
    @classmethod
    def _version_is_an_integer(cls, value: object) -> object:
        # `true == 1` in Python, so Literal[1] alone would take `"v": true`.
        if isinstance(value, bool):
            raise ValueError(f"Input should be {SIGNAL_VERSION}")
        return value

    @field_validator("issued_at", mode="before")
    @classmethod
    def _must_be_a_timestamp(cls, value: object) -> object:
        # A number would be read as seconds since 1970: `0` or a millisecond epoch is a producer bug.
        if isinstance(value, (int, float)):
            raise ValueError("issued_at must be an ISO-8601 timestamp string in UTC, not a number")
        return value

    @field_validator("issued_at")
    @classmethod
    def _must_be_utc(cls, value: datetime) -> datetime:
        # A naive timestamp is ambiguous across hosts; an offset other than UTC is a producer bug.
        if value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None):
            raise ValueError("issued_at must be an ISO-8601 timestamp in UTC (suffix Z or +00:00)")
        if value < EARLIEST_ISSUED_AT:
            raise ValueError(f"issued_at is before {EARLIEST_ISSUED_AT:%Y-%m-%d}: not a real signal time")
        return value

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class InvalidSignal(ValueError):
    """A message that is not a valid start signal; `reason` names every offending field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_signal(raw: str | bytes) -> StartSignal:
    """Parse and validate a signal body, raising `InvalidSignal` with a one-line reason.

    Outside input: whatever the body is (any size, any bytes, any nesting), the only exception that
    leaves is `InvalidSignal`, so one message can never stop the loop that reads it."""
    try:
        size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
        if size > MAX_SIGNAL_BYTES:
            raise InvalidSignal(f"body: {size} bytes, more than the {MAX_SIGNAL_BYTES} a signal may have")
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        return StartSignal.model_validate_json(text)
    except InvalidSignal:
        raise
    except ValidationError as exc:
        raise InvalidSignal(describe_validation_error(exc, top_level="body")) from None
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise InvalidSignal(f"body: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except Exception as exc:  # a parser failure (recursion, memory) is still this message's fault
        raise InvalidSignal(f"body: unparseable ({type(exc).__name__})") from None
