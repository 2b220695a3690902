"""Building the preprocessed cache (``glamor-fast prepare``): parallel, resumable, atomic.

For each split, the build happens in ``CACHE/.<split>.partial/``: ``plan.json`` (settings and
the list of sources), the two arrays (``numpy.lib.format.open_memmap``, written row by row by
the worker processes) and ``entries.jsonl`` (one line per finished row, appended after the row
is written). An interrupted build (Ctrl-C, a crash, a corrupt image) leaves only that hidden
folder; running the same command again resumes it, keeping the rows whose source is unchanged.
When every row is done, ``index.json`` is written, the files are fsync'ed and the folder is
renamed to ``CACHE/<split>``: a visible split is always complete.

With ``skip_bad`` an image that cannot be decoded is left out instead (a warning each): the
finished rows are compacted into new arrays before publishing, and the index lists the left-out
sources with their fingerprints under "unreadable", so the cache stays fresh while they are
unchanged (``find_changes``); a source fixed later makes it stale like a new file.

A split that already has a cache is rebuilt only for the entries whose source, box or label
changed (the other rows are copied from the old arrays); one that is fresh is left alone.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np
from tqdm.auto import tqdm

from .caer import CorruptImageError, decode_image
from .cache import (CONTEXTS, FACES, INDEX, StaleCacheError, cache_settings, content_hash, current_sources,
                    default_cache_dir, find_changes, load_index, partial_dir, split_dir)
from .box_files import list_splits
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
                  workers: Optional[int] = None, progress: bool = True, skip_bad: bool = False) -> dict:
    """Build (or resume, or update) the cache of ``root``'s splits; returns {split: summary}.

    Args:
        root: CAER-S-layout dataset root.
        out: cache folder (default ``<root>-cache`` beside the dataset).
        splits: split folder names (default: every split folder of root).
        face_visible: keep the face in the context (the paper's setting (iii)).
        no_box: policy for images without a face box ("unmasked", "drop", "detect").
        workers: decoding processes (default: every usable core; 1 runs in this process).
        skip_bad: leave out images that cannot be decoded (corrupt, empty, vanished), with a warning
            each on the ``glamor_fast`` logger, instead of failing.
    Summary per split: {"entries", "decoded", "copied", "resumed", "up_to_date", "path",
        "unreadable" (sources left out by skip_bad, now or by the build that is up to date)}.
    Raises PrepareError naming the sources that failed (corrupt image without skip_bad, box outside
    the image); nothing is published then.
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
        return {split: prepare_split(root, out, split, settings, pool, progress, skip_bad)
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


def prepare_split(root: Path, out: Path, split: str, settings: dict, pool: "_Workers", progress: bool,
                  skip_bad: bool = False) -> dict:
    rows = _plan(root, split, settings)
    n = len(rows)
    summary = {"entries": n, "decoded": 0, "copied": 0, "resumed": 0, "up_to_date": False,
               "path": str(split_dir(out, split)), "unreadable": 0}
    old = _old_cache(out, split, settings, root)
    if old is not None and not find_changes(old[0], root, split):
        left_out = old[0].get("unreadable", {})  # unchanged, or find_changes would have named them
        if [e["source"] for e in old[0]["entries"]] == [r["source"] for r in rows if r["source"] not in left_out]:
            summary.update(up_to_date=True, entries=len(old[0]["entries"]), unreadable=len(left_out))
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
        errors, unreadable = [], {}
        for result in pool.run(part, todo):
            if "error" in result and skip_bad and "unreadable" in result:
                logging.getLogger("glamor_fast").warning("skipped (--skip-bad): %s", result["error"])
                unreadable[result["unreadable"]] = result["fingerprint"]
                bar.update(1)
            elif "error" in result:
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
                           f"entries are kept in {part}); no cache was published"
                           + ("" if skip_bad else "; --skip-bad leaves undecodable images out"))
    keep = [i for i in range(n) if i in done]
    if not keep and n:
        raise PrepareError(f"none of the {n} images of split {split!r} could be decoded (--skip-bad left them "
                           f"all out, e.g. {next(iter(unreadable))}); no cache was published")
    if unreadable:
        _compact(part, keep)
    _publish(out, split, part, root, settings, [done[i] for i in keep],
             {rel: fp for rel, fp in unreadable.items() if fp is not None})
    summary.update(entries=len(keep), unreadable=len(unreadable))
    return summary


def _compact(part: Path, keep: list[int]) -> None:
    """Replace the partial build's arrays by their rows ``keep`` (in order), read through memory maps."""
    (part / PLAN).unlink()  # the old row numbers die with it: an interruption from here on starts afresh
    for name in (FACES, CONTEXTS):
        src = np.load(part / name, mmap_mode="r")
        dst = np.lib.format.open_memmap(part / f"kept.{name}", mode="w+", dtype=src.dtype,
                                        shape=(len(keep), *src.shape[1:]))
        for start in range(0, len(keep), 1024):
            rows = keep[start:start + 1024]
            dst[start:start + len(rows)] = src[rows]
        dst.flush()
        del src, dst
        os.replace(part / f"kept.{name}", part / name)


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


def _publish(out: Path, split: str, part: Path, root: Path, settings: dict, entries: list,
             unreadable: Optional[dict] = None) -> None:
    for e in entries:
        del e["i"]
    index = {"settings": settings, "root": str(root), "split": split, "count": len(entries), "entries": entries}
    if unreadable:
        index["unreadable"] = unreadable  # {source: fingerprint}: left out by --skip-bad
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
    (part / PLAN).unlink(missing_ok=True)  # gone already after _compact
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
    fp = None
    try:
        st = path.stat()
        data = path.read_bytes()
        fp = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "blake2b": content_hash(data)}
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
    except (CorruptImageError, FileNotFoundError) as exc:  # what --skip-bad leaves out
        return {"error": str(exc), "unreadable": row["source"], "fingerprint": fp}
    except (OSError, ValueError) as exc:
        return {"error": str(exc)}
    return {"i": i, "source": row["source"], "label": row["label"], "input_box": row["input_box"],
            "box": None if clipped is None else list(clipped), "box_origin": origin,
            "size": [int(img.shape[0]), int(img.shape[1])],
            "fingerprint": fp}


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
