"""The preprocessed cache: format, freshness check and the dataset that reads it.

``glamor-fast prepare`` (cache_build.py) decodes every image once and stores what the
deterministic part of the preprocessing produces (``transforms.prepare_uint8``)::

    CACHE/<split>/faces.npy      (N, 96, 96, 3) uint8   face crops (zeros where there is no face)
    CACHE/<split>/contexts.npy   (N, 128, 171, 3) uint8 (masked) context resized, before the
                                                        112x112 crop: the margin the random
                                                        training crop needs
    CACHE/<split>/index.json     settings, root, and per entry: source, label, box, box_origin,
                                 size (H, W), fingerprint {bytes, mtime_ns, blake2b}

A split folder exists only when complete (it is built in ``CACHE/.<split>.partial`` and renamed).
Evaluation items run ``transforms.finish_eval`` on the cached arrays, the function the
on-the-fly loader ends with, so their tensors are bit-identical. Training items are the uint8
arrays plus the augmentation draws of ``transforms.draw_augmentation`` (the per-sample path's
generator and order); ``gpu_augment.augment_batch`` applies them to whole batches on the device.

Freshness: a cache is served only if its settings match and every source still has the size
and mtime recorded (or, where they differ, the same content hash), the same box, and the split
has the same files; otherwise ``StaleCacheError`` says what changed and how to rebuild.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np
import torch

from .caer import CAERSDataset, SampleList
from .no_box import check_policy
from .transforms import CONTEXT_CROP, CONTEXT_RESIZE, FACE_SIZE, draw_augmentation, finish_eval

CACHE_VERSION = 1
INDEX = "index.json"
FACES = "faces.npy"
CONTEXTS = "contexts.npy"


class StaleCacheError(ValueError):
    """The cache no longer matches its sources or the requested settings (or does not exist)."""


def cache_settings(face_visible: bool = False, no_box: str = "unmasked") -> dict:
    """The preprocessing settings a cache is built with; a cache is only read with equal settings."""
    return {"version": CACHE_VERSION, "face_size": FACE_SIZE, "context_resize": list(CONTEXT_RESIZE),
            "context_crop": CONTEXT_CROP, "interpolation": "INTER_LINEAR", "face_visible": bool(face_visible),
            "no_box": check_policy(no_box), "opencv": cv2.__version__}


def default_cache_dir(root: Union[str, os.PathLike]) -> Path:
    """<root>-cache, beside the dataset (a folder inside it would look like a split)."""
    root = Path(root).resolve()
    return root.with_name(root.name + "-cache")


def content_hash(data) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def fingerprint(path: Path, data: Optional[bytes] = None) -> dict:
    """{bytes, mtime_ns, blake2b} of a source file (reads it when ``data`` is not given)."""
    st = path.stat()
    if data is None:
        data = path.read_bytes()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "blake2b": content_hash(data)}


def split_dir(cache: Union[str, os.PathLike], split: str) -> Path:
    return Path(cache) / split


def partial_dir(cache: Union[str, os.PathLike], split: str) -> Path:
    return Path(cache) / f".{split}.partial"


def rebuild_hint(root, cache, split: str, settings: dict) -> str:
    flags = " --face-visible" if settings.get("face_visible") else ""
    if settings.get("no_box", "unmasked") != "unmasked":
        flags += f" --no-box {settings['no_box']}"
    return f"glamor-fast prepare {root} --out {cache} --splits {split}{flags}"


def load_index(cache: Union[str, os.PathLike], split: str) -> dict:
    """The index of a complete split; StaleCacheError if there is none (naming an unfinished build)."""
    d = split_dir(cache, split)
    path = d / INDEX
    if not path.is_file():
        unfinished = partial_dir(cache, split)
        why = (f"an unfinished build is in {unfinished}: run `glamor-fast prepare` again to finish it"
               if unfinished.exists() else "build it with `glamor-fast prepare ROOT --out CACHE`")
        raise StaleCacheError(f"no complete cache of split {split!r} in {cache} ({why})")
    try:
        index = json.loads(path.read_text())
    except ValueError as exc:
        raise StaleCacheError(f"{path}: unreadable cache index ({exc}); rebuild with `glamor-fast prepare`") from None
    if index.get("settings", {}).get("version") != CACHE_VERSION:
        raise StaleCacheError(f"{path}: cache format version {index.get('settings', {}).get('version')}, this "
                              f"glamor_fast reads version {CACHE_VERSION}; rebuild with `glamor-fast prepare`")
    return index


def current_sources(root: Path, split: str) -> tuple[list, list, str]:
    """(samples [(relpath, label)], file boxes [box or None], box source) as the loader sees them now."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = CAERSDataset(root, split, no_box="unmasked")
    return ds.samples, ds.boxes, ds.box_source


def find_changes(index: dict, root: Path, split: str) -> dict[str, str]:
    """{relpath: why} for every entry that no longer matches its source (new and removed files included;
    a source that ``prepare --skip-bad`` left out as undecodable counts only once it changes)."""
    samples, boxes, _ = current_sources(root, split)
    policy = index["settings"]["no_box"]
    want = {rel: (label, box) for (rel, label), box in zip(samples, boxes)
            if not (policy == "drop" and box is None)}
    have = {e["source"]: e for e in index["entries"]}
    left_out = index.get("unreadable", {})  # {source: fingerprint} that prepare --skip-bad could not decode
    changes = {rel: "changed since prepare --skip-bad left it out" if rel in left_out else "new file"
               for rel in want if rel not in have
               and (rel not in left_out or source_changed(root / rel, left_out[rel]))}
    changes.update({rel: "removed" for rel in have if rel not in want})
    for rel, (label, box) in want.items():
        entry = have.get(rel)
        if entry is None:
            continue
        if entry["label"] != label:
            changes[rel] = "label changed"
        elif entry["input_box"] != (None if box is None else list(box)):
            changes[rel] = "face box changed"
        else:
            why = source_changed(root / rel, entry["fingerprint"])
            if why:
                changes[rel] = why
    return changes


def source_changed(path: Path, fp: dict) -> Optional[str]:
    """None if ``path`` matches fingerprint ``fp`` (size and mtime, or else size and hash), else why not."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    if st.st_size != fp["bytes"]:
        return "content changed (size)"
    if st.st_mtime_ns == fp["mtime_ns"]:
        return None
    return None if content_hash(path.read_bytes()) == fp["blake2b"] else "content changed"


def check_fresh(cache: Union[str, os.PathLike], split: str, settings: dict,
                root: Optional[Union[str, os.PathLike]] = None) -> dict:
    """The split's index if it is complete, built with ``settings`` and matches its sources; else StaleCacheError."""
    index = load_index(cache, split)
    root = Path(root) if root is not None else Path(index["root"])
    built = {k: v for k, v in index["settings"].items()}
    diff = [f"{k}: cache {built.get(k)!r}, wanted {v!r}" for k, v in settings.items() if built.get(k) != v]
    if diff:
        raise StaleCacheError(f"cache {split_dir(cache, split)} was built with other settings ({'; '.join(diff)}); "
                              f"rebuild it: {rebuild_hint(root, cache, split, settings)}")
    if not (root / split).is_dir():
        raise StaleCacheError(f"cache {split_dir(cache, split)}: its sources {root / split} are gone; pass the "
                              "dataset's new location (--data-root) or rebuild the cache")
    changes = find_changes(index, root, split)
    if changes:
        examples = "; ".join(f"{rel}: {why}" for rel, why in list(changes.items())[:3])
        raise StaleCacheError(
            f"cache {split_dir(cache, split)} is stale: {len(changes)} of its sources changed ({examples}"
            f"{'; ...' if len(changes) > 3 else ''}); rebuild the changed entries with "
            f"`{rebuild_hint(root, cache, split, settings)}`")
    return index


class CachedDataset(SampleList):
    """A split of a prepared cache, read through memory maps (opened lazily in each process).

    Args:
        cache: the cache folder (``glamor-fast prepare --out``).
        split: split name.
        train: training items (uint8 arrays + augmentation draws, to be augmented in batches on
            the device by ``gpu_augment.augment_batch``); else evaluation items, bit-identical to
            ``CAERSDataset(train=False)``'s.
        face_visible, no_box: the settings the cache must have been built with.
        normalize: ImageNet normalisation (evaluation items; training: ``augment_batch``'s job).
        seed: training draws for item i in epoch e come from Generator([seed, e, i]), as in
            CAERSDataset (call ``set_epoch``).
        root: where the sources are now (default: where they were when the cache was built).
        check: verify freshness (StaleCacheError when stale).
    Items: eval {"face" float32 (3, 96, 96), "context" float32 (3, 112, 112), "label", "path",
        "has_face"}; train {"face_u8" uint8 (96, 96, 3), "context_u8" uint8 (128, 171, 3),
        "aug" float64 (4,) = (flip, angle degrees, top, left), "label", "path", "has_face"}.
    """

    def __init__(self, cache, split: str, train: bool = False, face_visible: bool = False,
                 no_box: str = "unmasked", normalize: bool = False, seed: int = 0,
                 root: Optional[Union[str, os.PathLike]] = None, check: bool = True):
        self.cache = Path(cache)
        self.split = split
        self.train = bool(train)
        self.normalize = bool(normalize)
        self.seed = int(seed)
        self.epoch = 0
        settings = cache_settings(face_visible, no_box)
        self.index = check_fresh(cache, split, settings, root) if check else load_index(cache, split)
        self.root = Path(root) if root is not None else Path(self.index["root"])
        entries = self.index["entries"]
        self.samples = [(e["source"], e["label"]) for e in entries]
        self.boxes = [None if e["box"] is None else tuple(e["box"]) for e in entries]
        self.has_face = np.array([e["box"] is not None for e in entries], dtype=bool)
        missing = int((~self.has_face).sum())
        if missing:
            warnings.warn(
                f"CachedDataset({self.cache}, {split!r}): {missing} of {len(entries)} images have no face box; "
                f"the cache was built with --no-box {no_box}: they get a zero face and an unmasked context, "
                "so the face leaks into the context", stacklevel=2)
        self._arrays = None
        faces, contexts = self._open()
        if faces.shape[0] != len(entries) or contexts.shape[0] != len(entries):
            raise StaleCacheError(f"{split_dir(cache, split)}: arrays hold {faces.shape[0]}/{contexts.shape[0]} rows "
                                  f"but the index {len(entries)}; rebuild with `glamor-fast prepare`")

    def _open(self):
        if self._arrays is None:
            d = split_dir(self.cache, self.split)
            self._arrays = (np.load(d / FACES, mmap_mode="r"), np.load(d / CONTEXTS, mmap_mode="r"))
        return self._arrays

    def __getstate__(self):  # memory maps are reopened in each worker, never pickled as arrays
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state

    def uint8_item(self, index: int) -> tuple[Optional[np.ndarray], np.ndarray]:
        """(face (96, 96, 3) uint8 or None without a face, context (128, 171, 3) uint8), copied out of the maps."""
        faces, contexts = self._open()
        face = np.array(faces[index]) if self.has_face[index] else None
        return face, np.array(contexts[index])

    def __getitem__(self, index: int) -> dict:
        rel, label = self.samples[index]
        has_face = bool(self.has_face[index])
        item = {"label": label, "path": rel, "has_face": has_face}
        if not self.train:
            face, context = finish_eval(*self.uint8_item(index), normalize=self.normalize)
            item.update(face=torch.from_numpy(face), context=torch.from_numpy(context))
            return item
        faces, contexts = self._open()
        rng = np.random.default_rng([self.seed, self.epoch, index])
        item.update(face_u8=torch.from_numpy(np.array(faces[index])),
                    context_u8=torch.from_numpy(np.array(contexts[index])),
                    aug=torch.tensor(draw_augmentation(rng, has_face), dtype=torch.float64))
        return item
