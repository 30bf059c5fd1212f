"""The worker's own entry point (`functions.sync_worker.cli run`) with tracemalloc on: each SIGUSR1
writes a snapshot to `$C2C_BENCH_SNAPSHOT_DIR/snapshot-<n>.bin`, which rss_bench.py compares.

Only the RSS bench's `--tracemalloc` mode uses this; tracing costs memory and time, so the RSS
figures themselves come from the plain entry point.
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from itertools import count
from pathlib import Path
from types import FrameType

from functions.sync_worker.cli import main

FRAMES = 25


def _dump_on_signal(directory: Path) -> None:
    numbers = count()

    def dump(signum: int, frame: FrameType | None) -> None:
        path = directory / f"snapshot-{next(numbers)}.bin"
        tracemalloc.take_snapshot().dump(str(path))
        path.with_suffix(".done").touch()  # the snapshot is complete once this exists

    signal.signal(signal.SIGUSR1, dump)


if __name__ == "__main__":
    tracemalloc.start(FRAMES)
    _dump_on_signal(Path(os.environ["C2C_BENCH_SNAPSHOT_DIR"]))
    sys.exit(main(["run"]))
