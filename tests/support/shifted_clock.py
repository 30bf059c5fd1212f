"""Run a module with its wall clock shifted: `python -m tests.support.shifted_clock <offset_s> <module> [args]`.

Why: a worker end-to-end test has to cross a DST change (the autumn repeated hour above all) while
the worker runs on its own clock, and DST changes do not happen during a test run. time-machine
moves `time.time`, `datetime.now` and their relatives by `offset_s` with the clock still ticking;
`time.monotonic` is left alone, so timeouts, keep-alives and back-offs run as they would. A vendor
mock on the same offset (`MockClock(start=now + offset_s, speed=1)`) then agrees with the worker
to the millisecond. libfaketime would need no Python, but with Python 3.11 its monotonic-clock
handling breaks `time.sleep` (EINVAL) and hangs timed waits.
"""

from __future__ import annotations

import runpy
import sys
import time

import time_machine


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m tests.support.shifted_clock <offset_s> <module> [args...]")
    offset_s, module = float(sys.argv[1]), sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    with time_machine.travel(time.time() + offset_s, tick=True):
        # A ticking traveller starts its clock at the first reading, not on entry: without this one
        # the worker's clock would stand still while its modules import (a second or more on a busy
        # machine) and run that much behind the mock's for the whole run.
        time.time()
        runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
