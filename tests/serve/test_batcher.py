"""DynamicBatcher on its own: grouping, batching off, waiting only for requests on their way, failures."""
from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import pytest

from glamor_fast.serve.batcher import DynamicBatcher


class Recorder:
    """A stand-in for Engine.recognize: records each call's item sizes; each face's record is its item's name."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.calls, self.delay, self.fail = [], delay, fail

    def __call__(self, items):
        self.calls.append([len(faces) for _, faces in items])
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("model broke")
        return [[name] * len(faces) for name, faces in items]


def faces(n):
    return [((0, 0, 1, 1), None)] * n


def test_concurrent_items_share_forward_passes_up_to_max_batch():
    run = Recorder(delay=0.02)
    b = DynamicBatcher(run, max_batch=6, max_wait_ms=50)
    for _ in range(12):
        b.request_opened()
    futures = [b.submit(f"img{k}", faces(1 + k % 2)) for k in range(12)]
    results = [f.result(10) for f in futures]
    b.close()
    assert results == [[f"img{k}"] * (1 + k % 2) for k in range(12)]
    assert all(sum(c) <= 6 for c in run.calls) and len(run.calls) < 12
    assert sum(map(sum, run.calls)) == 18 and b.stats.faces == 18 and b.stats.largest <= 6


def test_max_batch_1_runs_every_image_alone():
    run = Recorder(delay=0.005)
    b = DynamicBatcher(run, max_batch=1, max_wait_ms=50)
    for _ in range(5):
        b.request_opened()
    futures = [b.submit(k, faces(1)) for k in range(5)]
    assert [f.result(10) for f in futures] == [[k] for k in range(5)]
    b.close()
    assert run.calls == [[1]] * 5


def test_an_image_with_more_faces_than_max_batch_runs_alone():
    run = Recorder(delay=0.02)
    b = DynamicBatcher(run, max_batch=4, max_wait_ms=50)
    for _ in range(3):
        b.request_opened()
    futures = [b.submit("a", faces(2)), b.submit("big", faces(9)), b.submit("c", faces(2))]
    assert [len(f.result(10)) for f in futures] == [2, 9, 2]
    b.close()
    assert [9] in run.calls and all(c == [9] or sum(c) <= 4 for c in run.calls)


def test_a_lone_request_does_not_wait_but_one_on_its_way_is_waited_for():
    run = Recorder()
    b = DynamicBatcher(run, max_batch=8, max_wait_ms=2000)
    b.request_opened()
    start = time.perf_counter()
    b.submit("alone", faces(1)).result(10)
    assert time.perf_counter() - start < 1.0  # not the 2 s wait: nobody else was coming
    b.request_opened()  # a second request is being decoded: the next pass waits for it
    first = b.submit("first", faces(1))
    threading.Timer(0.1, lambda: b.submit("second", faces(1))).start()
    assert first.result(10) == ["first"]
    b.close()
    assert run.calls[-1] == [1, 1]


def test_a_failing_model_fails_that_batch_and_the_thread_goes_on():
    run = Recorder(fail=True)
    b = DynamicBatcher(run, max_batch=4, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="model broke"):
        b.submit("x", faces(1)).result(10)
    run.fail = False
    assert b.submit("y", faces(1)).result(10) == ["y"]
    b.close()


def test_cancelled_items_are_skipped_and_no_faces_needs_no_model():
    gate = threading.Event()
    calls = []

    def run(items):
        gate.wait(10)
        calls.append([name for name, _ in items])
        return [[name] for name, _ in items]

    b = DynamicBatcher(run, max_batch=1, max_wait_ms=0)
    busy = b.submit("busy", faces(1))
    time.sleep(0.05)
    dropped = b.submit("dropped", faces(1))
    assert dropped.cancel()
    kept = b.submit("kept", faces(1))
    assert b.submit("empty", []).result(1) == []
    gate.set()
    assert busy.result(10) == ["busy"] and kept.result(10) == ["kept"]
    with pytest.raises(CancelledError):
        dropped.result(0)
    b.close()
    assert calls == [["busy"], ["kept"]]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="--max-batch"):
        DynamicBatcher(Recorder(), max_batch=0)
    with pytest.raises(ValueError, match="--max-wait-ms"):
        DynamicBatcher(Recorder(), max_wait_ms=-1)


def test_two_model_workers_run_forward_passes_side_by_side_and_both_stop():
    inside, peak, lock = [0], [0], threading.Lock()

    def run(items):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return [[name] for name, _ in items]

    b = DynamicBatcher(run, max_batch=1, max_wait_ms=0, workers=2)
    futures = [b.submit(k, faces(1)) for k in range(6)]
    assert [f.result(10) for f in futures] == [[k] for k in range(6)]
    b.close()  # returns once both threads have stopped (it joins them)
    assert peak[0] == 2
    with pytest.raises(ValueError, match="--model-workers"):
        DynamicBatcher(run, workers=0)
