"""Alternating rounds of contenders, each in its own process, and the median of per-round ratios.

The machine is shared, so load drifts between runs and moves contenders unequally: every bench here
runs each contender as its own process (no contender is slowed by another's threads, heap or GC),
alternates their order from round to round, and reports the median of the per-round ratios rather
than a ratio of medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]


def contender(
    script: Path,
    args: Sequence[str],
    *,
    timeout: float = 600.0,
    env: dict[str, str] | None = None,
    python: str | None = None,
    cwd: str | Path | None = None,
) -> dict:
    """Run `python script args...` as its own process (this interpreter unless `python` names
    another, e.g. a before-tree's own venv); its last stdout line is its JSON result."""
    child_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run(
        [python or sys.executable, str(script), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def orders(names: Sequence[str], rounds: int) -> Iterator[tuple[int, list[str]]]:
    """(round, contenders in this round's order): the order is reversed every other round."""
    for r in range(rounds):
        yield r, list(names) if r % 2 == 0 else list(reversed(names))


def tree_rounds(
    before: str | Path, after: str | Path, rounds: int, run: Callable[[str], dict]
) -> tuple[dict[str, list[dict]], list[float]]:
    """Alternating rounds of two trees: `run(tree)` starts one contender process for a tree and
    returns its result. Returns the results per tree ("before", "after") and the load averages
    seen before the first round and after each."""
    trees = {"before": str(Path(before).resolve()), "after": str(Path(after).resolve())}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    load = [os.getloadavg()[0]]
    for _, order in orders(list(trees), rounds):
        for name in order:
            runs[name].append(run(trees[name]))
        load.append(os.getloadavg()[0])
    return runs, load


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of the per-round ratios numerator[r] / denominator[r]."""
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


@dataclass
class CpuMeter:
    """Process CPU seconds (user + system) of one process and all its children, as psutil reads them."""

    pid: int

    def seconds(self) -> float:
        proc = psutil.Process(self.pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            # children_* covers children that already exited and were reaped.
            total += t.user + t.system + t.children_user + t.children_system
        return total


def print_result(result: dict[str, Any]) -> None:
    """The one JSON line a contender or a bench prints last (`contender` reads it)."""
    print(json.dumps(result), flush=True)
