"""The vendor simulator (`python -m simulator`) for the tests: the demo's launcher with the tests' defaults.

`SimulatorProcess(stations=..., latency_ms=..., error_rate=..., fault_stations=[...])` starts it on a
free port (c2c_sync.demo.services.SimulatorService does the starting, stopping and the admin API:
`stats`, `set_faults`, `advance_clock`, ...), so a test observes it the way it would a real vendor:
from the server's side. Fixtures: `simulator` (20 stations, clock frozen at FROZEN_NOW) and
`simulator_factory` (any options; every process is stopped after the test).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from c2c_sync.demo.services import DEFAULT_API_KEY, REPO_ROOT, SimulatorService  # noqa: F401 - re-exported

#: The frozen clock most tests use, so "now" and every reading are known in advance.
FROZEN_NOW = "2024-06-01T12:00:00Z"
FROZEN_CLOCK = f"{FROZEN_NOW}@0"


@dataclass
class SimulatorProcess(SimulatorService):
    """SimulatorService with the tests' defaults: 20 stations, the clock frozen at FROZEN_NOW, and
    (no workdir) its log in a temporary file removed on stop."""

    stations: int = 20
    clock: str = FROZEN_CLOCK


def simulator_starter(stack: ExitStack) -> Callable[..., SimulatorProcess]:
    """`start(**options)` -> a started SimulatorProcess, stopped when `stack` closes."""
    return lambda **options: stack.enter_context(SimulatorProcess(**options))


@pytest.fixture
def simulator():
    """A simulator with 20 stations and the clock frozen at FROZEN_NOW."""
    with SimulatorProcess() as sim:
        yield sim


@pytest.fixture
def simulator_factory():
    """`simulator_factory(stations=250, latency_ms=5, ...)` -> a started SimulatorProcess, stopped after."""
    with ExitStack() as stack:
        yield simulator_starter(stack)
