"""pytest fixtures over the vendor mocks (`vendor_mocks/`, written from the vendors' public docs).

`fusionsolar_mock` / `solaredge_mock` give a started mock (60 sites, clock frozen at MOCK_START);
`vendor_mock_factory(vendor, **options)` starts any variant; all stop after the test.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from vendor_mocks.servers import start_fusionsolar, start_mock, start_solaredge


@pytest.fixture
def vendor_mock_factory():
    """`vendor_mock_factory("solaredge", sites=50, latency_s=0.2)` -> a started MockServer."""
    with ExitStack() as stack:
        yield lambda vendor, **options: stack.enter_context(start_mock(vendor, **options))


@pytest.fixture
def fusionsolar_mock():
    with start_fusionsolar() as server:
        yield server


@pytest.fixture
def solaredge_mock():
    with start_solaredge() as server:
        yield server
