"""The shifted clock the end-to-end tests run a worker on must agree with a mock started on the
same offset for the whole run, however long the worker takes to import."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OFFSET_S = -86_400.0 * 30


def test_shifted_clock_ticks_from_the_start_not_from_the_first_reading(tmp_path):
    # The probe stands for a slow import: a second passes before the module first reads the clock.
    (tmp_path / "clock_probe.py").write_text("import time\ntime.sleep(1.0)\nprint(repr(time.time()))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    before = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "tests.support.shifted_clock", repr(OFFSET_S), "clock_probe"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=REPO,
    ).stdout
    after = time.time()
    seen = float(out.strip()) - OFFSET_S
    # The reading was taken at least a second after the process started, and before it ended.
    assert before + 1.0 <= seen <= after, (before, seen, after)
