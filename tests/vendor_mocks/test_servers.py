"""The mocks' admin API and CLI, which a worker or demo in another process drives them through."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from tests.support.simulator import REPO_ROOT
from vendor_mocks.fusionsolar import FusionSolarMock

pytestmark = pytest.mark.integration


def test_admin_api_moves_the_clock_sets_a_lag_and_reports_refusals(fusionsolar_mock):
    url = fusionsolar_mock.url
    assert requests.post(f"{url}/thirdData/getStationList", json={}, timeout=10).json()["failCode"] == 305
    moved = requests.post(f"{url}/_mock/clock", json={"advance_s": 3600}, timeout=10).json()
    assert moved["now"].startswith("2024-03-31T01:00:00")
    assert requests.post(f"{url}/_mock/lag", json={"site": "NE=33554001", "lag_s": 600}, timeout=10).ok
    app = fusionsolar_mock.app
    assert isinstance(app, FusionSolarMock)
    assert app.fleet.report_lag_s(app.fleet.site(1)) == 600
    stats = requests.get(f"{url}/_mock/stats", timeout=10).json()
    assert stats["refusals"] == {"token": 1} and stats["refused_total"] == 1
    assert stats["calls"] == {"getStationList": 1}


def test_the_cli_serves_a_mock_until_terminated():
    proc = subprocess.Popen(
        [sys.executable, "-m", "vendor_mocks", "solaredge", "--sites", "3", "--speed", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:"), line
        answer = requests.get(f"{url}/sites/list", params={"api_key": "se-test-key"}, timeout=10).json()
        assert answer["sites"]["count"] == 3
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
