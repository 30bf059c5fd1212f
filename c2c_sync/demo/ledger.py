"""What "no reading lost" means in the demo, decided precisely.

Before the worker starts, every station's cursor is set to the same instant `baseline` (a
boundary of the simulator's reading grid). The simulator is deterministic: station S has exactly
one reading at every `interval_s` boundary. A station's cursor only moves after the broker
acknowledged (PUBACK) every reading up to it, so at the end of the run:

    expected(S) = { message id of S at t : baseline < t <= final cursor(S), t on the grid }

and a reading is **lost** when it is in `expected` but the independent subscriber never received
it. Readings the worker published past a cursor it did not manage to advance (a station that
failed mid-page) are not expected yet: the next cycle sends them again, so they count as
"beyond cursor", never as lost. Message ids come from the worker's own contract
(`Reading.message_id`: station + series + reading time), the same id the payload carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from functions.sync_worker.source.base import Reading


def message_id(station_id: str, ts: datetime) -> str:
    return Reading(station_id, ts, {}).message_id


def expected_ids(baseline: datetime, final_cursors: dict[str, datetime], interval_s: int) -> set[str]:
    step = timedelta(seconds=interval_s)
    out: set[str] = set()
    for station_id, cursor in final_cursors.items():
        t = baseline + step
        while t <= cursor:
            out.add(message_id(station_id, t))
            t += step
    return out


@dataclass(frozen=True)
class Reconciliation:
    expected: int
    received_distinct: int
    lost: list[str] = field(default_factory=list)
    #: received, but past the final cursor of their station (the next cycle would send them again)
    beyond_cursor: int = 0

    @property
    def ok(self) -> bool:
        return not self.lost


def reconcile(
    baseline: datetime, final_cursors: dict[str, datetime], received: set[str], interval_s: int
) -> Reconciliation:
    expected = expected_ids(baseline, final_cursors, interval_s)
    lost = sorted(expected - received)
    return Reconciliation(
        expected=len(expected), received_distinct=len(received), lost=lost, beyond_cursor=len(received - expected)
    )
