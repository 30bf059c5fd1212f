"""`GroupCommit` on its own (no Redis): who sends which group, and that every item is answered once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from functions.sync_worker.store import GroupCommit


class Gate:
    """A send that records each group and the thread that sent it, and holds the first one until
    the test opens the gate (so that the others queue behind it)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.groups: list[tuple[str, list[str]]] = []

    def send(self, items: list[str]) -> list[object]:
        self.groups.append((threading.current_thread().name, list(items)))
        self.entered.set()
        self.opened.wait(5)
        return [ValueError(i) if i.startswith("bad") else f"ok:{i}" for i in items]


class Lane(threading.Thread):
    """One lane calling `run` with its item; what it got back is in `results`."""

    def __init__(self, group: GroupCommit[str], item: str) -> None:
        super().__init__(name=f"lane-{item}")
        self.group, self.item = group, item
        self.results: dict[str, object] = {}

    def run(self) -> None:
        try:
            self.results[self.item] = self.group.run(self.item)
        except Exception as exc:
            self.results[self.item] = exc


def run_named(group: GroupCommit[str], item: str) -> Lane:
    lane = Lane(group, item)
    lane.start()
    return lane


def wait_pending(group: GroupCommit[str], n: int) -> None:
    deadline = time.monotonic() + 5
    while len(group._pending) < n and time.monotonic() < deadline:
        time.sleep(0.002)
    assert len(group._pending) == n


def test_items_queued_during_a_round_trip_go_together_sent_by_the_first_queued_lane_each_answered_on_its_own():
    gate = Gate()
    group: GroupCommit[str] = GroupCommit(gate.send)
    first = run_named(group, "a")
    assert gate.entered.wait(5)
    queued: list[Lane] = []
    for n, i in enumerate(("b", "bad-c", "d"), 1):  # one after the other: the queue's order is known
        queued.append(run_named(group, i))
        wait_pending(group, n)
    gate.opened.set()
    for t in [first, *queued]:
        t.join(5)
        assert not t.is_alive(), f"{t.name} was never answered"
    assert gate.groups == [("lane-a", ["a"]), ("lane-b", ["b", "bad-c", "d"])]
    answers = {k: v for t in [first, *queued] for k, v in t.results.items()}
    assert answers["a"] == "ok:a" and answers["b"] == "ok:b" and answers["d"] == "ok:d"
    assert isinstance(answers["bad-c"], ValueError)


def test_a_send_that_fails_reaches_every_item_of_its_group_and_the_next_group_still_goes():
    calls = 0

    def send(items: list[int]) -> list[object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return [i * 2 for i in items]

    group: GroupCommit[int] = GroupCommit(send)
    with pytest.raises(ConnectionError):
        group.run(1)
    assert group.run(2) == 4


def test_a_send_answering_the_wrong_number_of_items_leaves_no_lane_waiting():
    entered, opened = threading.Event(), threading.Event()

    def send(items: list[int]) -> list[object]:
        entered.set()
        opened.wait(5)
        return [0]  # one answer, whatever the group's size

    group: GroupCommit[int] = GroupCommit(send)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(group.run, 0)
        assert entered.wait(5)
        rest = [pool.submit(group.run, i) for i in (1, 2, 3)]
        time.sleep(0.05)
        opened.set()
        errors = [f.exception(5) for f in rest]
    assert first.result(5) == 0
    assert all(isinstance(e, RuntimeError) and "1 answers for a group of 3" in str(e) for e in errors), errors


def test_many_lanes_each_get_their_own_answer():
    def send(items: list[int]) -> list[object]:
        time.sleep(0.0005)
        return [i + 1000 for i in items]

    group: GroupCommit[int] = GroupCommit(send)
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(group.run, range(3000)))
    assert answers == [i + 1000 for i in range(3000)]


def test_items_given_together_go_in_one_group_behind_the_one_in_flight_each_with_its_own_outcome():
    gate = Gate()
    group: GroupCommit[str] = GroupCommit(gate.send)
    first = run_named(group, "a")
    assert gate.entered.wait(5)
    results: list[object] = []
    many = threading.Thread(target=lambda: results.extend(group.run_many(["b", "bad-c", "d"])), name="settler")
    many.start()
    wait_pending(group, 3)
    later = run_named(group, "e")
    wait_pending(group, 4)
    gate.opened.set()
    for t in (first, many, later):
        t.join(5)
        assert not t.is_alive(), f"{t.name} was never answered"
    assert gate.groups == [("lane-a", ["a"]), ("settler", ["b", "bad-c", "d", "e"])]
    assert results[0] == "ok:b" and isinstance(results[1], ValueError) and results[2] == "ok:d"
    assert later.results == {"e": "ok:e"}
    assert group.run_many([]) == []
