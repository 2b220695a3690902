"""Face detection in a pool of threads against a pool of processes (the server's detection pool).

    python -m bench.detect_pool [--workers 2] [--images 48] [--rounds 3]

Each job detects the faces of one decoded photograph (grace_hopper.jpg, 512x600, the server's
still-image Haar settings) and returns the boxes; the process pool gets the image pickled to it,
as a server would have to send it. Rounds alternate threads/processes; images/s per round.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

_LOCAL = threading.local()  # each thread's detector (in each process)


def _new_detector():
    import cv2

    from glamor_fast.data.faces import make_detector
    from glamor_fast.predict.run import DEFAULT_MIN_FACE, IMAGE_DETECT_SIDE

    cv2.setNumThreads(1)  # as in the server
    return make_detector("haar", max_side=IMAGE_DETECT_SIDE, min_size=DEFAULT_MIN_FACE)


def _detect(image):
    """The boxes of one image, with this thread's own detector (OpenCV's cascade is not shared)."""
    if not hasattr(_LOCAL, "detector"):
        _LOCAL.detector = _new_detector()
    return [d.box for d in _LOCAL.detector(image)]


def main(argv=None) -> int:
    import cv2
    from matplotlib import cbook

    from glamor_fast.data import read_image

    from .machine import cpu_model

    p = argparse.ArgumentParser(prog="python -m bench.detect_pool", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    image = read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    pools = {"threads": ThreadPoolExecutor(args.workers), "processes": ProcessPoolExecutor(args.workers)}
    for kind, pool in pools.items():  # warm-up: start the workers, load the cascade
        list(pool.map(_detect, [image] * args.workers * 2))
    rates = {k: [] for k in pools}
    for _ in range(args.rounds):
        for kind, pool in pools.items():
            t0 = time.perf_counter()
            found = list(pool.map(_detect, [image] * args.images))
            rates[kind].append(args.images / (time.perf_counter() - t0))
            assert all(len(f) >= 1 for f in found)
    for pool in pools.values():
        pool.shutdown()
    print(f"bench.detect_pool on {cpu_model()}, {args.workers} workers, {args.images} images per round")
    for kind, r in rates.items():
        print(f"  {kind:9s}: {statistics.median(r):.1f} images/s (rounds: {', '.join(format(x, '.1f') for x in r)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
