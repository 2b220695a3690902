"""Rebuild NCAER-S (the GLAMOR-Net paper's "Novel CAER-S") from the CAER videos.

The paper: "for each video in the original CAER dataset, we split the video into multiple parts.
Then we randomly select one frame of each part ... Any original video that provides frames for
the training set will be removed from the testing set." The public NCAER-S download is gone,
so this rebuilds it:

    CAER_ROOT/{train,validation,test}/<Emotion>/*.avi
      -> OUT/images/{train,val,test}/<Emotion>/<video>_<frame>.jpg   (CAER-S layout)
         OUT/images/crop/{train,val,test}/<Emotion>/<video>_<frame>.txt   face boxes
         OUT/manifest.json   parameters, counts, and per video: split, class, frames, images

so ``CAERSDataset(OUT / "images", "train")`` loads it.

Parts: the paper does not give K. The default, DEFAULT_PARTS = 5, gives about 66k images from
CAER's 13,201 clips (the CAER paper's count), close to the ~70k images of CAER-S that the
paper compares against; the frames of one short clip (about 85 on average: ~1.1M frames over
13,201 clips) are strongly correlated, so more parts add little new information per clip, and
5 parts of ~17 frames keep the chosen frames apart. A video shorter than K frames gives all of
its frames.

No video in two splits: frames are assigned by video, so a video's frames all go to its own
split. CAER's own split is by video, but copies of the data are re-packed, so every video is
also fingerprinted by content (SHA-256 of the file): a video whose bytes already appeared in an
earlier split (priority train, then val, then test) is dropped from the later one and listed
under "removed" in the manifest. Names are not used for this: CAER's clip files are named by
short numbers, so the same file name in two folders can be two different clips. (A re-encoded
copy of a clip has different bytes and is not caught.) For copies known to name clips uniquely,
``by_name=True`` (``--dedupe-by-name``) also drops a later-split video whose <Emotion>/<name>
appeared in an earlier split; without it, such name matches are only counted in the manifest
("same_name_as_earlier_split").

Frame choice is seeded per video (by seed and the video's path inside CAER_ROOT), so the result
does not depend on processing order.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
import zlib
from pathlib import Path
from typing import Callable, Union

import cv2
import numpy as np
from tqdm import tqdm

from .caer import EMOTIONS, box_file_for, class_index, write_box_file
from .faces import HaarFaceDetector, largest_face

DEFAULT_PARTS = 5
# CAER split folder (lower case) -> NCAER-S split name, in leakage priority order.
SPLITS = {"train": "train", "validation": "val", "val": "val", "test": "test"}
SPLIT_ORDER = ("train", "val", "test")
VIDEO_EXTENSIONS = (".avi", ".mp4")
JPEG_QUALITY = 95


def choose_frames(num_frames: int, parts: int, rng: np.random.Generator) -> list[int]:
    """Split [0, num_frames) into min(parts, num_frames) contiguous parts; one random index per part."""
    if num_frames <= 0:
        return []
    k = min(parts, num_frames)
    bounds = np.linspace(0, num_frames, k + 1).astype(np.int64)
    return [int(rng.integers(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def _read_frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """Decode the frames at ``indices`` (BGR uint8); fewer come back if the video ends early."""
    wanted = set(indices)
    cap = cv2.VideoCapture(str(path))
    frames = {}
    for i in range(max(indices) + 1):
        if not cap.grab():
            break
        if i in wanted:
            ok, frame = cap.retrieve()
            if ok and frame is not None:
                frames[i] = frame
    cap.release()
    return frames


def sample_video(path: Path, parts: int, rng_seed: list[int]) -> tuple[int, dict[int, np.ndarray]]:
    """-> (frame count, {frame index: BGR frame}) with one random frame per part."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        return 0, {}
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if n <= 0:
        n = _count_frames(path)
    indices = choose_frames(n, parts, np.random.default_rng(rng_seed))
    frames = _read_frames(path, indices) if indices else {}
    if len(frames) < len(indices):  # the container's frame count was wrong: count for real, choose again
        n = _count_frames(path)
        indices = choose_frames(n, parts, np.random.default_rng(rng_seed))
        frames = _read_frames(path, indices) if indices else {}
    return n, {i: frames[i] for i in indices if i in frames}


def _fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan_caer(caer_root: Union[str, os.PathLike]) -> list[tuple[str, str, Path]]:
    """[(ncaer split, class name, video path)] for CAER_ROOT/{train,validation,test}/<Emotion>/*.avi."""
    caer_root = Path(caer_root)
    if not caer_root.is_dir():
        raise FileNotFoundError(f"CAER root not found: {caer_root}")
    videos = []
    for split_dir in sorted(p for p in caer_root.iterdir() if p.is_dir()):
        split = SPLITS.get(split_dir.name.lower())
        if split is None:
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                name = EMOTIONS[class_index(class_dir.name)]
            except ValueError as err:
                raise ValueError(f"{class_dir}: {err}") from None
            stems = {}
            for f in sorted(class_dir.iterdir()):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS:
                    if f.stem in stems:
                        raise ValueError(f"{f} and {stems[f.stem]} have the same name; rename one")
                    stems[f.stem] = f
                    videos.append((split, name, f))
    if not videos:
        raise ValueError(
            f"no videos found under {caer_root}/{{train,validation,test}}/<Emotion>/*.avi "
            f"(split folders there: {sorted(p.name for p in caer_root.iterdir() if p.is_dir())})"
        )
    return videos


def build_ncaer(caer_root: Union[str, os.PathLike], out: Union[str, os.PathLike], parts: int = DEFAULT_PARTS,
                seed: int = 0, detector: Union[str, None, Callable] = "haar", progress: bool = True,
                overwrite: bool = False, by_name: bool = False) -> dict:
    """Build NCAER-S from CAER videos; returns the manifest (also written to OUT/manifest.json).

    Args:
        caer_root: folder holding {train,validation,test}/<Emotion>/*.avi.
        out: output folder; images go to out/images (a CAER-S-layout root).
        parts: K, the number of parts per video (one frame per part).
        seed: frame-choice seed.
        detector: "haar" (OpenCV's Haar cascade), a detector (image_rgb -> list[Detection]; the largest
            face is kept) or a callable(image_rgb) -> box or None, or None
            to write no box files (run `glamor-fast detect-faces OUT/images` later).
        progress: tqdm progress bar.
        overwrite: replace an existing out/images; otherwise an existing non-empty one is an error.
        by_name: also treat videos with the same <Emotion>/<file stem> in two splits as one video.
    """
    if int(parts) < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    caer_root, out = Path(caer_root), Path(out)
    images = out / "images"
    if images.exists() and any(images.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{images} already exists and is not empty; pass overwrite=True (--overwrite)")
        shutil.rmtree(images)
    if detector == "haar":
        detector = HaarFaceDetector()
    elif detector is not None and not callable(detector):
        raise ValueError(f"detector must be 'haar', a callable or None, got {detector!r}")

    videos = scan_caer(caer_root)
    videos.sort(key=lambda v: SPLIT_ORDER.index(v[0]))  # stable: train first, then val, test
    seen: dict[str, str] = {}  # fingerprint -> relpath of the first video with those bytes
    seen_names: dict[str, tuple[str, str]] = {}  # "<Emotion>/<stem>" -> (split, relpath) of its first video
    manifest = {"caer_root": str(caer_root), "parts": int(parts), "seed": int(seed), "by_name": bool(by_name),
                "videos": {}, "removed": {}, "same_name_as_earlier_split": {}, "unreadable": [], "counts": {}}
    counts = {s: {"videos": 0, "images": 0, "faces": 0, "removed": 0, "unreadable": 0,
                  "per_class": {c: 0 for c in EMOTIONS}} for s in SPLIT_ORDER}
    for split, cls, path in tqdm(videos, desc="build-ncaer", unit="video", disable=not progress):
        rel_video = path.relative_to(caer_root).as_posix()
        digest = _fingerprint(path)
        if digest in seen:
            manifest["removed"][rel_video] = f"same file content as {seen[digest]}"
            counts[split]["removed"] += 1
            continue
        name_key = f"{cls}/{path.stem}"
        first = seen_names.setdefault(name_key, (split, rel_video))
        if first[0] != split:
            if by_name:
                manifest["removed"][rel_video] = f"same class and name as {first[1]}"
                counts[split]["removed"] += 1
                continue
            manifest["same_name_as_earlier_split"][rel_video] = first[1]
        seen[digest] = rel_video
        num_frames, frames = sample_video(path, int(parts), [int(seed), zlib.crc32(rel_video.encode())])
        if not frames:
            manifest["unreadable"].append(rel_video)
            counts[split]["unreadable"] += 1
            continue
        entry = {"split": split, "class": cls, "num_frames": num_frames, "frames": [], "images": []}
        for index, bgr in sorted(frames.items()):
            rel_img = f"{split}/{cls}/{path.stem}_{index:05d}.jpg"
            target = images / rel_img
            target.parent.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise RuntimeError(f"could not encode frame {index} of {path} as JPEG")
            buf.tofile(str(target))
            if detector is not None:
                box = largest_face(detector(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                write_box_file(box_file_for(images, rel_img), box)
                counts[split]["faces"] += box is not None
            entry["frames"].append(index)
            entry["images"].append(rel_img)
        manifest["videos"][rel_video] = entry
        counts[split]["videos"] += 1
        counts[split]["images"] += len(entry["frames"])
        counts[split]["per_class"][cls] += len(entry["frames"])
    manifest["counts"] = counts
    if manifest["unreadable"]:
        warnings.warn(f"build_ncaer: {len(manifest['unreadable'])} videos could not be decoded and were skipped "
                      f"(listed under 'unreadable' in the manifest), e.g. {manifest['unreadable'][0]}")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")
    return manifest


def format_counts(manifest: dict) -> str:
    """A small text table of the manifest's per-split counts."""
    counts = manifest["counts"]
    lines = [f"{'split':<6} {'videos':>7} {'images':>7} {'faces':>7} {'removed':>8} {'unreadable':>10}  per class"]
    for split in SPLIT_ORDER:
        c = counts[split]
        per_class = " ".join(f"{k}={v}" for k, v in c["per_class"].items())
        lines.append(f"{split:<6} {c['videos']:>7} {c['images']:>7} {c['faces']:>7} {c['removed']:>8} "
                     f"{c['unreadable']:>10}  {per_class}")
    return "\n".join(lines)
