"""Dynamic batching: the faces of concurrent requests go through the model in one forward pass.

``DynamicBatcher(run, max_batch, max_wait_ms, workers)`` owns ``workers`` model threads (each
running its own forward passes: on a small CPU, two threads of one torch thread each use both
cores without OpenMP's barriers, which stall when other processes share the cores). ``submit(image, faces)``
queues one image's faces and returns a ``concurrent.futures.Future`` of its face records. A
thread takes the oldest item, then keeps adding queued items while the batch holds fewer than
``max_batch`` faces, waiting up to ``max_wait_ms`` for more, but only while other requests are
still on their way (``open_requests`` counts requests being decoded or detected): a lone client
does not pay the wait. Then ``run(items)`` (``Engine.recognize``) classifies them all at once.
``max_batch=1`` turns batching off: one image per forward pass, nothing waits.

An image with more faces than ``max_batch`` runs alone. Items whose future was cancelled (the
request timed out) are skipped; an exception in ``run`` fails every future of that batch.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

_STOP = object()


@dataclass
class _Item:
    image: object
    faces: Sequence
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """Running totals of the model thread: forward passes, faces, and seconds in ``run``."""
    batches: int = 0
    faces: int = 0
    images: int = 0
    model_s: float = 0.0
    largest: int = 0

    def as_dict(self) -> dict:
        return {"batches": self.batches, "faces": self.faces, "images": self.images,
                "model_s": round(self.model_s, 6), "largest_batch": self.largest,
                "mean_batch": round(self.faces / self.batches, 3) if self.batches else 0.0}


class DynamicBatcher:
    def __init__(self, run: Callable[[list], list], max_batch: int = 16, max_wait_ms: float = 5.0, workers: int = 1):
        if int(workers) < 1:
            raise ValueError(f"--model-workers must be >= 1, got {workers}")
        if int(max_batch) < 1:
            raise ValueError(f"--max-batch must be >= 1, got {max_batch}")
        if not max_wait_ms >= 0:
            raise ValueError(f"--max-wait-ms must be >= 0, got {max_wait_ms}")
        self.run, self.max_batch, self.max_wait = run, int(max_batch), float(max_wait_ms) / 1000.0
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._open = 0
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, name=f"glamor-serve model {k}", daemon=True)
                         for k in range(int(workers))]
        for t in self._threads:
            t.start()

    # requests between arrival and their last submit: the batcher waits only while some exist
    def request_opened(self) -> None:
        with self._lock:
            self._open += 1

    def request_closed(self) -> None:
        with self._lock:
            self._open -= 1

    @property
    def open_requests(self) -> int:
        return self._open

    def submit(self, image, faces: Sequence) -> Future:
        """Queue ``image``'s faces ([(box, score)]); the future's result is their face records."""
        item = _Item(image, list(faces))
        if not item.faces:
            item.future.set_result([])
        else:
            self._queue.put(item)
        return item.future

    def close(self) -> None:
        """Finish what is queued, then stop the model threads."""
        self._queue.put(_STOP)  # each thread that sees it passes it on
        for t in self._threads:
            t.join()

    def _loop(self) -> None:
        carry = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is _STOP:
                self._queue.put(_STOP)
                return
            batch, faces, stop = [first], len(first.faces), False
            deadline = time.monotonic() + self.max_wait
            while faces < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._open <= len(batch):
                        break  # nobody else is coming, or waited long enough
                    try:
                        item = self._queue.get(timeout=min(left, 0.001))
                    except queue.Empty:
                        continue
                if item is _STOP:
                    stop = True
                    break
                if faces + len(item.faces) > self.max_batch:
                    carry = item
                    break
                batch.append(item)
                faces += len(item.faces)
            self._run(batch)
            if stop:
                self._queue.put(_STOP)
                return

    def _run(self, batch: list) -> None:
        batch = [item for item in batch if item.future.set_running_or_notify_cancel()]
        if not batch:
            return
        start = time.perf_counter()
        try:
            results = self.run([(item.image, item.faces) for item in batch])
        except BaseException as exc:  # handed to the requests; the thread keeps serving
            for item in batch:
                item.future.set_exception(exc)
            return
        finally:
            with self._stats_lock:
                self.stats.model_s += time.perf_counter() - start
        n = sum(len(item.faces) for item in batch)
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.images += len(batch)
            self.stats.faces += n
            self.stats.largest = max(self.stats.largest, n)
        for item, records in zip(batch, results):
            item.future.set_result(records)
