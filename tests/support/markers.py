"""Slow work in-process must be marked too (see tests/conftest.py for the process/socket guard)."""

from __future__ import annotations

import pytest

#: The test whose setup or call is running (fixtures of a wider scope are set up for it too).
running: list[pytest.Item] = []


def require_marker(marker: str, what: str) -> None:
    """For fixtures doing slow in-process work the process/socket guard cannot see (a CDK synth
    runs in the node process jsii started at import): the test they run for must carry `marker`."""
    if running and not running[0].get_closest_marker(marker):
        raise AssertionError(f"{running[0].nodeid} must be marked {marker} to {what}")
