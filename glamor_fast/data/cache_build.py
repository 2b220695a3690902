"""Building the preprocessed cache (``glamor-fast prepare``): parallel, resumable, atomic.

For each split, the build happens in ``CACHE/.<split>.partial/``: ``plan.json`` (settings and
the list of sources), the two arrays (``numpy.lib.format.open_memmap``, written row by row by
the worker processes) and ``entries.jsonl`` (one line per finished row, appended after the row
is written). An interrupted build (Ctrl-C, a crash, a corrupt image) leaves only that hidden
folder; running the same command again resumes it, keeping the rows whose source is unchanged.
When every row is done, ``index.json`` is written, the files are fsync'ed and the folder is
renamed to ``CACHE/<split>``: a visible split is always complete.

A split that already has a cache is rebuilt only for the entries whose source, box or label
changed (the other rows are copied from the old arrays); one that is fresh is left alone.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np
from tqdm.auto import tqdm

from .caer import decode_image
from .cache import (CONTEXTS, FACES, INDEX, StaleCacheError, cache_settings, content_hash, current_sources,
                    default_cache_dir, find_changes, load_index, partial_dir, split_dir)
from .faces import list_splits
from .transforms import CONTEXT_RESIZE, FACE_SIZE, clip_box, prepare_uint8

PLAN = "plan.json"
ENTRIES = "entries.jsonl"


class PrepareError(ValueError):
    """Some sources could not be prepared (each named); the finished rows are kept for the next run."""


def default_workers() -> int:
    """Every core this process may use (decoding is the whole job)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def prepare_cache(root: Union[str, os.PathLike], out: Optional[Union[str, os.PathLike]] = None,
                  splits: Optional[Sequence[str]] = None, face_visible: bool = False, no_box: str = "unmasked",
                  workers: Optional[int] = None, progress: bool = True) -> dict:
    """Build (or resume, or update) the cache of ``root``'s splits; returns {split: summary}.

    Args:
        root: CAER-S-layout dataset root.
        out: cache folder (default ``<root>-cache`` beside the dataset).
        splits: split folder names (default: every split folder of root).
        face_visible: keep the face in the context (the paper's setting (iii)).
        no_box: policy for images without a face box ("unmasked", "drop", "detect").
        workers: decoding processes (default: every usable core; 1 runs in this process).
    Summary per split: {"entries", "decoded", "copied", "resumed", "up_to_date", "path"}.
    Raises PrepareError naming the sources that failed (corrupt image, box outside the image).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    out = Path(out) if out is not None else default_cache_dir(root)
    settings = cache_settings(face_visible, no_box)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"--workers {workers}: must be >= 1")
    pool = _Workers(workers)
    try:
        return {split: prepare_split(root, out, split, settings, pool, progress)
                for split in (splits or list_splits(root))}
    finally:
        pool.close()


def _plan(root: Path, split: str, settings: dict) -> list[dict]:
    samples, boxes, _ = current_sources(root, split)
    rows = [{"source": rel, "label": label, "input_box": None if box is None else list(box)}
            for (rel, label), box in zip(samples, boxes)]
    if settings["no_box"] == "drop":
        rows = [r for r in rows if r["input_box"] is not None]
    return rows


def _same_stat(root: Path, entry: dict) -> bool:
    try:
        st = (root / entry["source"]).stat()
    except OSError:
        return False
    return st.st_size == entry["fingerprint"]["bytes"] and st.st_mtime_ns == entry["fingerprint"]["mtime_ns"]


def _old_cache(out: Path, split: str, settings: dict, root: Path):
    """(old index, old faces, old contexts) when a complete cache with these settings and root exists, else None."""
    try:
        index = load_index(out, split)
    except StaleCacheError:
        return None
    if index["settings"] != settings or Path(index["root"]) != root:
        return None
    d = split_dir(out, split)
    return index, np.load(d / FACES, mmap_mode="r"), np.load(d / CONTEXTS, mmap_mode="r")


def prepare_split(root: Path, out: Path, split: str, settings: dict, pool: "_Workers", progress: bool) -> dict:
    rows = _plan(root, split, settings)
    n = len(rows)
    summary = {"entries": n, "decoded": 0, "copied": 0, "resumed": 0, "up_to_date": False,
               "path": str(split_dir(out, split))}
    old = _old_cache(out, split, settings, root)
    if old is not None and not find_changes(old[0], root, split) \
            and [e["source"] for e in old[0]["entries"]] == [r["source"] for r in rows]:
        summary["up_to_date"] = True
        return summary

    part = partial_dir(out, split)
    plan = {"settings": settings, "root": str(root), "split": split, "rows": rows}
    plan_key = content_hash(json.dumps(plan, sort_keys=True).encode())
    done = _resumable_entries(part, plan_key, root)
    if done is None:
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        (part / PLAN).write_text(json.dumps({"key": plan_key, **plan}))
        rh, rw = CONTEXT_RESIZE
        np.lib.format.open_memmap(part / FACES, mode="w+", dtype=np.uint8, shape=(n, FACE_SIZE, FACE_SIZE, 3)).flush()
        np.lib.format.open_memmap(part / CONTEXTS, mode="w+", dtype=np.uint8, shape=(n, rh, rw, 3)).flush()
        done = {}
    summary["resumed"] = len(done)

    log = open(part / ENTRIES, "a")
    faces = np.load(part / FACES, mmap_mode="r+")
    contexts = np.load(part / CONTEXTS, mmap_mode="r+")
    bar = tqdm(total=n, initial=len(done), desc=f"prepare {split}", unit="img", disable=not progress,
               dynamic_ncols=True)

    def record(entry: dict) -> None:
        done[entry["i"]] = entry
        log.write(json.dumps(entry) + "\n")
        log.flush()
        bar.update(1)

    try:
        if old is not None:  # copy the rows whose source did not change
            reusable = {e["source"]: (i, e) for i, e in enumerate(old[0]["entries"])
                        if _same_stat(root, e)}
            for i, row in enumerate(rows):
                hit = reusable.get(row["source"])
                if i in done or hit is None or hit[1]["label"] != row["label"] \
                        or hit[1]["input_box"] != row["input_box"]:
                    continue
                faces[i], contexts[i] = old[1][hit[0]], old[2][hit[0]]
                record({**hit[1], "i": i})
                summary["copied"] += 1
            faces.flush()
            contexts.flush()
        todo = [i for i in range(n) if i not in done]
        errors = []
        for result in pool.run(part, todo):
            if "error" in result:
                errors.append(result["error"])
                bar.update(1)
            else:
                record(result)
                summary["decoded"] += 1
    finally:
        bar.close()
        log.close()
        del faces, contexts
    if errors:
        shown = "; ".join(errors[:3]) + ("; ..." if len(errors) > 3 else "")
        raise PrepareError(f"{len(errors)} of {n} images of split {split!r} could not be prepared: {shown}. "
                           f"Fix or remove them and run the same command again ({len(done)} finished "
                           f"entries are kept in {part}); no cache was published")
    _publish(out, split, part, root, settings, [done[i] for i in range(n)])
    return summary


def _resumable_entries(part: Path, plan_key: str, root: Path) -> Optional[dict]:
    """{row: entry} already done in an unfinished build of the same plan; None to start afresh."""
    try:
        if json.loads((part / PLAN).read_text())["key"] != plan_key:
            return None
        lines = (part / ENTRIES).read_text().splitlines() if (part / ENTRIES).is_file() else []
    except (OSError, ValueError, KeyError):
        return None
    done = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by the interruption
        if _same_stat(root, entry):
            done[entry["i"]] = entry
    return done


def _publish(out: Path, split: str, part: Path, root: Path, settings: dict, entries: list) -> None:
    for e in entries:
        del e["i"]
    index = {"settings": settings, "root": str(root), "split": split, "count": len(entries), "entries": entries}
    tmp = part / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index))
    for name in (FACES, CONTEXTS, tmp.name):
        fd = os.open(part / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, part / INDEX)
    (part / ENTRIES).unlink()
    (part / PLAN).unlink()
    final, stale = split_dir(out, split), out / f".{split}.old"
    shutil.rmtree(stale, ignore_errors=True)
    if final.exists():
        os.replace(final, stale)
    os.replace(part, final)
    shutil.rmtree(stale, ignore_errors=True)


# --- the per-image work (in worker processes, or in this one with workers=1) ---

_STATE: dict = {}  # per partial folder: its plan and writable maps, opened on first use in each process


def _state(part: str) -> dict:
    if part not in _STATE:
        cv2.setNumThreads(1)
        plan = json.loads((Path(part) / PLAN).read_text())
        _STATE[part] = {"root": Path(plan["root"]), "rows": plan["rows"], "settings": plan["settings"],
                        "detector": None, "faces": np.load(Path(part) / FACES, mmap_mode="r+"),
                        "contexts": np.load(Path(part) / CONTEXTS, mmap_mode="r+")}
    return _STATE[part]


def _process_one(task: tuple) -> dict:
    """Decode row i's source once, write its two uint8 arrays, return its index entry (or {"error": ...})."""
    part, i = task
    state = _state(part)
    row, root, settings = state["rows"][i], state["root"], state["settings"]
    path = root / row["source"]
    try:
        st = path.stat()
        data = path.read_bytes()
        img = decode_image(np.frombuffer(data, dtype=np.uint8), path)
        box, origin = row["input_box"], "file"
        if box is None:
            origin = "none"
            if settings["no_box"] == "detect":
                if state["detector"] is None:
                    from .faces import HaarFaceDetector

                    state["detector"] = HaarFaceDetector()
                found = state["detector"](img)
                if found is not None:
                    box, origin = [int(round(float(v))) for v in found], "detected"
        clipped = None
        if box is not None:
            clipped = clip_box(box, img.shape[0], img.shape[1])
            if clipped is None:
                raise ValueError(f"{path}: face box {tuple(box)} lies outside the {img.shape[1]}x{img.shape[0]} image")
        face, context = prepare_uint8(img, clipped, settings["face_visible"])
        state["faces"][i] = 0 if face is None else face
        state["contexts"][i] = context
    except (OSError, ValueError) as exc:
        return {"error": str(exc)}
    return {"i": i, "source": row["source"], "label": row["label"], "input_box": row["input_box"],
            "box": None if clipped is None else list(clipped), "box_origin": origin,
            "size": [int(img.shape[0]), int(img.shape[1])],
            "fingerprint": {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "blake2b": content_hash(data)}}


class _Workers:
    """The decoding processes, started on first use and shared by every split of one prepare."""

    def __init__(self, workers: int):
        self.workers, self.pool = workers, None

    def run(self, part: Path, todo: list):
        tasks = [(str(part), i) for i in todo]
        if self.workers <= 1 or len(tasks) < 2:
            try:
                yield from map(_process_one, tasks)
            finally:
                _STATE.pop(str(part), None)
            return
        if self.pool is None:
            # spawn, not fork: a child forked after OpenCV used its thread pool can deadlock in its first cv2 call
            self.pool = multiprocessing.get_context("spawn").Pool(self.workers)
        yield from self.pool.imap_unordered(_process_one, tasks, chunksize=4)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
