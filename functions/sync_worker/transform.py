"""Reading -> OutboundMessage: the payload contract consumers on the IoT platform read.

The payload carries a schema version and the reading's stable `message_id` (station + series +
reading time), so a consumer can drop the duplicates that at-least-once delivery allows. A revised
value is published again under the same id with the new values: a consumer keeps the latest.

Schema 2 (schema 1 had no `series` and its id was `<station>:<time>`, which two devices of one
station at one time shared):
    {"schema": 2, "message_id": "<station>:<series>:<ts>", "station_id": "...",
     "series": "readings" | "<endpoint>/<device>", "ts": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "values": {...}}
In the id, `%` and `:` inside the station id and the series are written `%25` and `%3A`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.source.base import Reading
from functions.sync_worker.uplink.profile import OutboundMessage

#: Version of the payload below; bump it on any incompatible change.
PAYLOAD_SCHEMA_VERSION = 2


def to_message(reading: Reading) -> OutboundMessage:
    """Encode one reading; a reading that cannot be encoded is a `PermanentError` (skip it)."""
    if reading.ts.tzinfo is None:
        raise PermanentError(f"reading {reading.message_id} has a naive timestamp", station_id=reading.station_id)
    message_id = reading.message_id  # "<station>:<series>:<ts>", computed once: it is the hot path
    body = {
        "schema": PAYLOAD_SCHEMA_VERSION,
        "message_id": message_id,
        "station_id": reading.station_id,
        "series": reading.series,
        "ts": message_id[-_TS_LEN:],
        "values": reading.values,
    }
    try:
        payload = _encode(body)
    except (TypeError, ValueError) as exc:
        raise PermanentError(
            f"reading {message_id} is not JSON-encodable: {exc}", station_id=reading.station_id
        ) from None
    return OutboundMessage(
        station_id=reading.station_id,
        message_id=message_id,
        payload=payload,
        properties={"message_id": message_id, "schema": _SCHEMA},
    )


_SCHEMA = str(PAYLOAD_SCHEMA_VERSION)
_TS_LEN = len("2024-01-01T00:00:00.000000Z")


def _refuse(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("non-finite number")
    raise TypeError(f"{type(value).__name__} is not a JSON value")


# One encoder for every message: `json.dumps` with any non-default option builds a new
# JSONEncoder per call, which showed up on the publish path.
_encode_str = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_refuse).encode

#: What orjson would serialize on its own but the payload contract never did (datetimes,
#: dataclasses, str/int subclasses): handed to `_refuse`, so they take the stdlib path below.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _encode(body: dict[str, Any]) -> bytes:
    """orjson (C, about a tenth of the stdlib encoder's time for a 15-value reading), with the
    stdlib encoder as the reference for anything unusual. orjson writes NaN and infinities as
    `null` where the contract refuses them, so a payload with a `null` in it, and one orjson
    refuses (an integer beyond 64 bits, a value of another type), is encoded again by the stdlib
    encoder, which raises or gives that payload exactly as before. The bytes of plain payloads are
    the stdlib's too, except non-ASCII text (UTF-8, not `\\u` escapes) and exponents below 1e-4
    (`1e-7`, not `1e-07`): the same JSON values."""
    try:
        payload = orjson.dumps(body, default=_refuse, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return _encode_str(body).encode()
    if b"null" in payload:
        return _encode_str(body).encode()
    return payload
