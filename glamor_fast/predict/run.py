"""``predict``: every face of every frame of images, folders and videos -> annotated copies and JSON lines.

The command line's library entry point, built on ``glamor_fast.EmotionRecognizer``: for each
input (``inputs.expand_inputs``) the recognizer finds and classifies every face (images:
``predict``; videos: ``predict_video``, detection every ``every`` frames and tracking in
between), and ``out_dir`` receives (each file written to a temporary name, then renamed):

- ``<name>`` for an image: the same picture with a box and "emotion p" per face (same size,
  same name and format); with ``attention``, the faces' attention maps blended over the frame
  (their pixel-wise maximum) and, when it holds several faces, ``<stem>.attention.png`` with
  one panel per face: that face's own map;
- ``<stem>.mp4`` for a video: the annotated video (same frame count, rate and size; an odd
  width/height is padded by one pixel, see ``outputs.VideoWriter``), and
  ``<stem>.timeline.png``: the probability of each class over time, one panel per face track,
  all panels on the video's time axis;
- ``predictions.jsonl``: one record per face per frame (``RECORD_FIELDS``); a frame with no
  face gets one record with ``box``, ``track``, ``emotion`` and ``probs`` null; ``csv``: the same
  records as a table (``csv_records``);
- ``predictions.files.json``: the files this run wrote (``manifest``).

An ``out_dir`` used by an earlier run is refused unless ``overwrite`` (``manifest`` says what is
then deleted, and that nothing else is). An input that fails is reported through ``on_error``
and skipped; its records are removed from the JSON lines and its partial outputs deleted; the
others are still done.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import cv2
import numpy as np
from tqdm import tqdm

from glamor_fast.recognizer import (DEFAULT_DETECT_SIDE, DEFAULT_EVERY, DEFAULT_MIN_FACE, IMAGE_DETECT_SIDE,
                                    EmotionRecognizer, Face, check_video_options)

from . import manifest
from .annotate import draw_faces
from .csv_records import CsvRecords
from .inputs import InputError, Source, VideoReader, expand_inputs, open_source
from .outputs import JsonLines, VideoWriter, write_image, write_timeline

DEFAULT_CHECKPOINT = "runs/quickstart/best.pt"
JSONL_NAME = "predictions.jsonl"
RECORD_FIELDS = ("source", "frame", "time_s", "track", "box", "detector_score", "emotion", "probs")
__all__ = ["predict", "PredictResult", "DEFAULT_CHECKPOINT", "DEFAULT_DETECT_SIDE", "DEFAULT_EVERY",
           "DEFAULT_MIN_FACE", "IMAGE_DETECT_SIDE", "JSONL_NAME", "RECORD_FIELDS"]


@dataclass
class PredictResult:
    """What a ``predict`` call did: records written, files written, one error line per failed input."""
    records: int = 0
    outputs: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    jsonl: Optional[Path] = None
    csv: Optional[Path] = None
    removed: list = field(default_factory=list)   # files of an earlier run deleted by ``overwrite``


def predict(inputs: Sequence, checkpoint, out_dir, *, detector: Union[str, Callable] = "haar",
            every: int = DEFAULT_EVERY, attention: bool = False, smooth: Optional[float] = None,
            device: str = "auto", backend: Optional[str] = None, batch_frames: int = 8,
            detect_side: Optional[int] = DEFAULT_DETECT_SIDE, min_face: int = DEFAULT_MIN_FACE,
            progress: bool = False, overwrite: bool = False, csv: Optional[os.PathLike] = None,
            on_record: Optional[Callable[[dict], None]] = None,
            on_error: Optional[Callable[[str], None]] = None) -> PredictResult:
    """Classify every face in ``inputs`` (image/video files, folders) with ``checkpoint``; write to ``out_dir``.

    Args:
        detector: a name of ``glamor_fast.data.faces.DETECTORS`` or a callable(image_rgb) -> list[Detection].
        every: on videos, run the detector on every ``every``-th frame (1: every frame).
        attention: blend each face's attention map over the annotated frames (GLA/CA models only).
        smooth: on videos, time constant in seconds of per-track exponential smoothing of the
            probabilities (None: off).
        backend: the GLA backend (None: the checkpoint's).
        batch_frames: frames whose faces go through the model in one forward pass.
        detect_side: Haar only: longer side of the downscaled copy it runs on for video frames (None:
            full size); still images, where speed matters less, use max(detect_side, 1280).
        min_face: faces whose box is smaller than this many pixels (width or height, in the
            original frame) are ignored, whatever the detector.
        overwrite: write into an ``out_dir`` an earlier run used (and replace an existing ``csv``).
        csv: also write the records to this CSV file.
        on_record: called with each record as it is written; on_error with each failed input's line.
    Raises (before anything is written) CheckpointError, ValueError for bad options or a used
    ``out_dir`` without ``overwrite``, OSError when ``out_dir`` or ``csv`` cannot be written.
    """
    check_video_options(every, smooth, batch_frames)
    out_dir = Path(out_dir)
    sources, errors = expand_inputs(inputs)
    sources = _unique_outputs(sources, out_dir)
    _refuse_overwriting_inputs(sources, out_dir, csv)
    if not overwrite:
        used = manifest.used_by(out_dir, [q for s in sources for q in _output_paths(s, out_dir)], JSONL_NAME)
        if used:
            raise ValueError(f"--out {out_dir} holds the results of an earlier run ({used[0].name}"
                             f"{f' and {len(used) - 1} more' if len(used) > 1 else ''}); pass --overwrite to replace "
                             "them, or choose another folder")
        if csv is not None and Path(csv).exists():
            raise ValueError(f"--csv {csv} already exists; pass --overwrite to replace it")
    rec = EmotionRecognizer(checkpoint, detector=detector, device=device, backend=backend, min_face=min_face,
                            detect_side=detect_side)
    if attention and rec.attention_kind not in ("gla", "ca"):
        raise ValueError(f"--attention needs a model with GLA or CA attention; checkpoint {checkpoint} has "
                         f"attention {rec.attention_kind!r}")
    _writable_dir(out_dir, f"--out {out_dir}")
    if csv is not None:
        _writable_dir(Path(csv).parent, f"--csv {csv}")
    old_files = manifest.read_manifest(out_dir)
    report = on_error or (lambda line: None)
    for line in errors:
        report(line)
    result = PredictResult(errors=list(errors))
    sinks = [JsonLines(out_dir / JSONL_NAME)]
    if csv is not None:
        sinks.append(CsvRecords(csv, RECORD_FIELDS, {"probs": rec.classes}))
    job = _Job(rec, int(every), attention, smooth, int(batch_frames), progress, sinks, on_record)
    try:
        for src in tqdm(sources, desc="predict", unit="file", disable=not progress or len(sources) < 2):
            marks = [s.mark() for s in sinks]
            try:
                result.outputs += job.run(src, out_dir)
            except (InputError, OSError, ValueError, cv2.error) as exc:
                for s, m in zip(sinks, marks):
                    s.rewind(m)
                line = str(exc) if str(src.path) in str(exc) else f"{src.path}: {exc}"
                result.errors.append(line)
                report(line)
        result.records = sinks[0].count
        result.jsonl = sinks[0].close()
        if csv is not None:
            result.csv = sinks[1].close()
    except BaseException:
        for s in sinks:
            s.abort()
        if result.outputs:  # a later --overwrite must still find the files of both runs
            manifest.write_manifest(out_dir, manifest.merge(old_files, manifest.entries_for(out_dir, result.outputs)))
        raise
    written = [*result.outputs, result.jsonl] + ([result.csv] if result.csv is not None else [])
    entries = manifest.entries_for(out_dir, written)
    result.removed = manifest.remove_stale(out_dir, old_files, {e["path"] for e in entries})
    manifest.write_manifest(out_dir, entries)
    return result


def _writable_dir(folder: Path, what: str) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"{what}: cannot write there ({exc.strerror or exc})") from None
    return folder


def _refuse_overwriting_inputs(sources: Iterable[Source], out_dir: Path, csv: Optional[os.PathLike]) -> None:
    inputs = {s.path.resolve() for s in sources}
    for s in sources:
        for out in _output_paths(s, out_dir):
            if out.resolve() in inputs:
                raise ValueError(f"--out {out_dir}: writing {out} would overwrite the input {out}; "
                                 "choose another folder")
    if csv is not None:
        reserved = {(out_dir / name).resolve() for name in (JSONL_NAME, manifest.MANIFEST_NAME)}
        if Path(csv).resolve() in inputs | reserved:
            raise ValueError(f"--csv {csv}: that file is an input or another output of this run; choose another name")


def _unique_outputs(sources: list, out_dir: Path) -> list[Source]:
    """Sources whose outputs would clash (``a/x.jpg`` and ``b/x.jpg`` given as files; ``x.avi`` and
    ``x.mp4`` in one folder) get ``-2``, ``-3``... added to the later one's output name."""
    used, out = set(), []
    for src in sources:
        k, candidate = 1, src
        while any(p in used for p in _output_paths(candidate, out_dir)):
            k += 1
            candidate = replace(src, rel=src.rel.with_name(f"{src.rel.stem}-{k}{src.rel.suffix}"))
        used.update(_output_paths(candidate, out_dir))
        out.append(candidate)
    return out


def _output_paths(src: Source, out_dir: Path) -> list[Path]:
    base = out_dir / src.rel
    if src.kind == "image":
        return [base]
    video = base.with_suffix(".mp4")
    return [video, video.with_name(video.stem + ".timeline.png")] + ([base] if src.kind == "unknown" else [])


class _Job:
    """The per-input work of one ``predict`` call (recognizer and options shared by all inputs)."""

    def __init__(self, rec: EmotionRecognizer, every: int, attention: bool, smooth: Optional[float],
                 batch_frames: int, progress: bool, sinks: list, on_record: Optional[Callable]):
        self.rec, self.every, self.attention, self.smooth = rec, every, attention, smooth
        self.batch_frames, self.progress, self.sinks, self.on_record = batch_frames, progress, sinks, on_record

    def run(self, src: Source, out_dir: Path) -> list[Path]:
        kind, data = open_source(src)
        target = out_dir / src.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "image":
            return self._image(src, data, target)
        return self._video(src, data, target)

    def _image(self, src: Source, image: np.ndarray, target: Path) -> list[Path]:
        faces = self.rec.predict(image, attention=self.attention)
        for i, f in enumerate(faces):  # a still image's faces are numbered left to right
            f.track = i
        self._write(src, 0, 0.0, faces)
        maps = [f.attention for f in faces] if self.attention else None
        written = [write_image(target, draw_faces(image, [f.to_dict() for f in faces], maps))]
        if self.attention and len(faces) > 1:  # the annotated image shows their maximum; here each one alone
            panels = [draw_faces(image, [f.to_dict()], [f.attention]) for f in faces]
            written.append(write_image(target.with_name(f"{target.stem}.attention.png"), np.concatenate(panels, 1)))
        return written

    def _video(self, src: Source, reader: VideoReader, target: Path) -> list[Path]:
        try:
            frames = self.rec.predict_video(reader, every=self.every, attention=self.attention, smooth=self.smooth,
                                            batch_frames=self.batch_frames)
            writer = VideoWriter(target.with_suffix(".mp4"), frames.fps, frames.size)
        except BaseException:
            reader.close()
            raise
        timeline: dict = {}
        bar = tqdm(frames, total=frames.frame_count or None, desc=src.path.name, unit="frame",
                   disable=not self.progress, leave=False)
        try:
            for vf in bar:
                self._write(src, vf.index, vf.time_s, vf.faces)
                for f in vf.faces:
                    times, series = timeline.setdefault(f.track, ([], []))
                    times.append(vf.time_s)
                    series.append(np.array(list(f.probs.values()), np.float32))
                maps = [f.attention for f in vf.faces] if self.attention else None
                writer.write(draw_faces(vf.image, [f.to_dict() for f in vf.faces], maps))
        except BaseException:
            frames.close()
            writer.abort()
            raise
        finally:
            bar.close()
        video = writer.close()
        title = f"{src.path.name}: {writer.frames} frames at {frames.fps:g} fps"
        png = write_timeline(video.with_name(video.stem + ".timeline.png"), title, self.rec.classes,
                             {t: (np.asarray(v[0]), np.asarray(v[1])) for t, v in timeline.items()},
                             duration=writer.frames / frames.fps)
        return [video, png]

    def _write(self, src: Source, frame: int, time_s: float, faces: list[Face]) -> None:
        """The records of one frame (one with nulls when it has no face) to every sink and ``on_record``."""
        rows = [f.to_dict() for f in faces] or [{"track": None, "box": None, "detector_score": None,
                                                 "emotion": None, "probs": None}]
        for row in rows:
            row.pop("attention", None)
            r = {"source": str(src.path), "frame": int(frame), "time_s": round(float(time_s), 6), **row}
            r = {k: r[k] for k in RECORD_FIELDS}
            for sink in self.sinks:
                sink.write(r)
            if self.on_record is not None:
                self.on_record(r)
