"""``predict``: every face of every frame of images, folders and videos -> annotated copies and JSON lines.

For each input (``inputs.expand_inputs``) the faces of each frame are found by a detector
(``glamor_fast.data.faces``), each face is classified with its own face-masked context
(``model.FaceClassifier``; the faces of ``batch_frames`` frames go through the model in one
forward pass), and ``out_dir`` receives (each file written to a temporary name, then renamed):

- ``<name>`` for an image: the same picture with a box and "emotion p" per face (same size,
  same name and format); with ``attention``, the faces' attention maps blended over the frame
  (their pixel-wise maximum) and, when it holds several faces, ``<stem>.attention.png`` with
  one panel per face: that face's own map;
- ``<stem>.mp4`` for a video: the annotated video (same frame count, rate and size; an odd
  width/height is padded by one pixel, see ``outputs.VideoWriter``), and
  ``<stem>.timeline.png``: the probability of each class over time, one panel per face track;
- ``predictions.jsonl``: one record per face per frame (``RECORD_FIELDS``); a frame with no
  face gets one record with ``box``, ``track``, ``emotion`` and ``probs`` null.

Videos are streamed: detection runs every ``every`` frames and a ``FaceTracker`` carries the boxes
(and stable track ids) in between, so every frame still gets its records and annotation.
An input that fails is reported through ``on_error`` and skipped; its records are removed from
the JSON lines and its partial outputs deleted; the others are still done.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import cv2
import numpy as np
from tqdm import tqdm

from glamor_fast.data.faces import Detection, make_detector

from .annotate import draw_faces
from .inputs import InputError, Source, VideoReader, expand_inputs, open_source
from .model import FaceClassifier
from .outputs import JsonLines, VideoWriter, write_image, write_timeline
from .tracking import FaceTracker, ProbSmoother

DEFAULT_CHECKPOINT = "runs/quickstart/best.pt"
JSONL_NAME = "predictions.jsonl"
RECORD_FIELDS = ("source", "frame", "time_s", "track", "box", "detector_score", "emotion", "probs")
DEFAULT_EVERY = 5          # detect on every 5th video frame; the tracker fills the frames between
DEFAULT_DETECT_SIDE = 480  # Haar runs on video frames downscaled to this longer side
IMAGE_DETECT_SIDE = 1280   # ... and on still images downscaled to at most this (at least detect_side)
DEFAULT_MIN_FACE = 40      # smaller faces are ignored (the model sees faces at 96x96); also halves Haar's time


@dataclass
class PredictResult:
    """What a ``predict`` call did: records written, files written, one error line per failed input."""
    records: int = 0
    outputs: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    jsonl: Optional[Path] = None


@dataclass
class _Frame:
    index: int
    image: np.ndarray
    faces: list          # [(track id, box, detector score)]


def predict(inputs: Sequence, checkpoint, out_dir, *, detector: Union[str, Callable] = "haar",
            every: int = DEFAULT_EVERY, attention: bool = False, smooth: Optional[float] = None,
            device: str = "auto", backend: Optional[str] = None, batch_frames: int = 8,
            detect_side: Optional[int] = DEFAULT_DETECT_SIDE, min_face: int = DEFAULT_MIN_FACE,
            progress: bool = False,
            on_record: Optional[Callable[[dict], None]] = None,
            on_error: Optional[Callable[[str], None]] = None) -> PredictResult:
    """Classify every face in ``inputs`` (image/video files, folders) with ``checkpoint``; write to ``out_dir``.

    Args:
        detector: a name of ``glamor_fast.data.faces.DETECTORS`` or a callable(image_rgb) -> list[Detection].
        every: on videos, run the detector on every ``every``-th frame (1: every frame).
        attention: blend each face's attention map over the annotated frames (GLA/CA models only).
        smooth: on videos, time constant in seconds of per-track exponential smoothing of the
            probabilities (None: off).
        batch_frames: frames whose faces go through the model in one forward pass.
        detect_side: Haar only: longer side of the downscaled copy it runs on for video frames (None:
            full size); still images, where speed matters less, use max(detect_side, 1280).
        min_face: faces whose box is smaller than this many pixels (width or height, in the
            original frame) are ignored, whatever the detector.
        on_record: called with each record as it is written; on_error with each failed input's line.
    Raises (before any input is read) CheckpointError, ValueError for bad options, OSError when
    ``out_dir`` cannot be written.
    """
    if int(every) < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    if int(batch_frames) < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
    if smooth is not None and not smooth > 0:
        raise ValueError(f"--smooth must be a time constant > 0 seconds, got {smooth}")
    sources, errors = expand_inputs(inputs)
    sources = _unique_outputs(sources, Path(out_dir))
    _refuse_overwriting_inputs(sources, Path(out_dir))
    classifier = FaceClassifier(checkpoint, device=device, backend=backend)
    if attention and classifier.attention not in ("gla", "ca"):
        raise ValueError(f"--attention needs a model with GLA or CA attention; checkpoint {checkpoint} has "
                         f"attention {classifier.attention!r}")
    image_detector = detector
    if detector == "haar":
        image_side = None if detect_side is None else max(detect_side, IMAGE_DETECT_SIDE)
        detector = make_detector("haar", max_side=detect_side, min_size=min_face)
        image_detector = make_detector("haar", max_side=image_side, min_size=min_face)
    elif isinstance(detector, str):
        detector = image_detector = make_detector(detector)
    out_dir = _writable_dir(out_dir)
    report = on_error or (lambda line: None)
    for line in errors:
        report(line)
    result = PredictResult(errors=list(errors))
    jsonl = JsonLines(out_dir / JSONL_NAME)
    job = _Job(classifier, detector, image_detector, int(every), attention, smooth, int(batch_frames), int(min_face),
               progress, jsonl, on_record)
    try:
        for src in tqdm(sources, desc="predict", unit="file", disable=not progress or len(sources) < 2):
            mark = jsonl.mark()
            try:
                result.outputs += job.run(src, out_dir)
            except (InputError, OSError, ValueError, cv2.error) as exc:
                jsonl.rewind(mark)
                line = str(exc) if str(src.path) in str(exc) else f"{src.path}: {exc}"
                result.errors.append(line)
                report(line)
        result.records = jsonl.count
        result.jsonl = jsonl.close()
    except BaseException:
        jsonl.abort()
        raise
    return result


def _writable_dir(out_dir) -> Path:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None
    return out_dir


def _refuse_overwriting_inputs(sources: Iterable[Source], out_dir: Path) -> None:
    inputs = {s.path.resolve() for s in sources}
    for s in sources:
        for out in _output_paths(s, out_dir):
            if out.resolve() in inputs:
                raise ValueError(f"--out {out_dir}: writing {out} would overwrite the input {out}; choose another folder")


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
    """The per-input work of one ``predict`` call (model, detector and options shared by all inputs)."""

    def __init__(self, classifier: FaceClassifier, detector: Callable, image_detector: Callable, every: int,
                 attention: bool, smooth: Optional[float], batch_frames: int, min_face: int, progress: bool,
                 jsonl: JsonLines,
                 on_record: Optional[Callable]):
        self.classifier, self.every, self.min_face = classifier, every, min_face
        self.detector, self.image_detector = detector, image_detector
        self.attention, self.smooth, self.batch_frames = attention, smooth, batch_frames
        self.progress, self.jsonl, self.on_record = progress, jsonl, on_record
        self.max_faces = 32  # faces per forward pass at most (bounds memory in crowded frames)

    def run(self, src: Source, out_dir: Path) -> list[Path]:
        kind, data = open_source(src)
        target = out_dir / src.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "image":
            return self._image(src, data, target)
        try:
            return self._video(src, data, target)
        finally:
            data.close()

    def _image(self, src: Source, image: np.ndarray, target: Path) -> list[Path]:
        faces = [(i, d.box, d.score) for i, d in enumerate(self._detect(image, src, self.image_detector))]
        maps: dict = {}
        (annotated,) = self._classify(src, [_Frame(0, image, faces)], fps=None, smoother=None, timeline=None,
                                      keep_maps=maps)
        written = [write_image(target, annotated)]
        if self.attention and len(faces) > 1:  # the annotated image shows their maximum; here each one alone
            records, attn = maps[0]
            panels = [draw_faces(image, [r], [a]) for r, a in zip(records, attn)]
            written.append(write_image(target.with_name(f"{target.stem}.attention.png"), np.concatenate(panels, 1)))
        return written

    def _video(self, src: Source, reader: VideoReader, target: Path) -> list[Path]:
        writer = VideoWriter(target.with_suffix(".mp4"), reader.fps, reader.size)
        tracker = FaceTracker()
        smoother = ProbSmoother(self.smooth) if self.smooth else None
        timeline: dict = {}
        bar = tqdm(reader, total=reader.frame_count or None, desc=src.path.name, unit="frame",
                   disable=not self.progress, leave=False)
        try:
            buffer: list[_Frame] = []
            n_faces = 0
            for index, frame in enumerate(bar):
                if (frame.shape[1], frame.shape[0]) != reader.size:
                    raise InputError(f"{src.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                     f"the video {reader.size[0]}x{reader.size[1]}")
                if index % self.every == 0:
                    tracker.update(self._detect(frame, src, self.detector))
                faces = [(t.id, t.box, t.score) for t in tracker.current()]
                buffer.append(_Frame(index, frame, faces))
                n_faces += len(faces)
                if len(buffer) >= self.batch_frames or n_faces >= self.max_faces:
                    for out in self._classify(src, buffer, reader.fps, smoother, timeline):
                        writer.write(out)
                    buffer, n_faces = [], 0
            for out in self._classify(src, buffer, reader.fps, smoother, timeline):
                writer.write(out)
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        video = writer.close()
        title = f"{src.path.name}: {writer.frames} frames at {reader.fps:g} fps"
        png = write_timeline(video.with_name(video.stem + ".timeline.png"), title, self.classifier.classes,
                             {t: (np.asarray(v[0]), np.asarray(v[1])) for t, v in timeline.items()})
        return [video, png]

    def _detect(self, image: np.ndarray, src: Source, detector: Callable) -> list[Detection]:
        found = detector(image)
        out = []
        for d in found:
            box, score = d[0], d[1]
            if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"{src.path}: the detector returned an invalid box {tuple(box)}")
            if min(box[2] - box[0], box[3] - box[1]) < self.min_face:
                continue
            out.append(Detection(tuple(int(v) for v in box), None if score is None else float(score)))
        return out

    def _classify(self, src: Source, frames: list, fps: Optional[float], smoother: Optional[ProbSmoother],
                  timeline: Optional[dict], keep_maps: Optional[dict] = None) -> list[np.ndarray]:
        """One forward pass for every face of ``frames``; writes their records; returns annotated frames.
        ``keep_maps`` receives {frame index: (face records, attention maps)}."""
        if not frames:
            return []
        pairs = [(f, face) for f in frames for face in f.faces]
        scores = self.classifier([f.image for f, _ in pairs], [face[1] for _, face in pairs])
        classes = self.classifier.classes
        per_frame: dict[int, list] = {f.index: [] for f in frames}
        maps: dict[int, list] = {f.index: [] for f in frames}
        for k, (f, (track, box, score)) in enumerate(pairs):
            time_s = 0.0 if fps is None else f.index / fps
            probs = scores.probs[k]
            if smoother is not None:
                probs = smoother(track, time_s, probs)
            if timeline is not None:
                times, series = timeline.setdefault(track, ([], []))
                times.append(time_s)
                series.append(probs.astype(np.float32))
            per_frame[f.index].append(self._record(src, f.index, time_s, track, box, score, classes, probs))
            if scores.attn is not None:
                maps[f.index].append(scores.attn[k])
        annotated = []
        for f in frames:
            records = per_frame[f.index] or [self._record(src, f.index, 0.0 if fps is None else f.index / fps,
                                                          None, None, None, classes, None)]
            for r in records:
                self.jsonl.write(r)
                if self.on_record is not None:
                    self.on_record(r)
            annotated.append(draw_faces(f.image, per_frame[f.index], maps[f.index] if self.attention else None))
            if keep_maps is not None:
                keep_maps[f.index] = (per_frame[f.index], maps[f.index])
        return annotated

    @staticmethod
    def _record(src: Source, frame: int, time_s: float, track, box, score, classes, probs) -> dict:
        if probs is None:
            emotion, prob_dict = None, None
        else:
            prob_dict = {c: round(float(p), 6) for c, p in zip(classes, probs)}
            emotion = classes[int(np.argmax(probs))]
        return {"source": str(src.path), "frame": int(frame), "time_s": round(float(time_s), 6),
                "track": None if track is None else int(track), "box": None if box is None else [int(v) for v in box],
                "detector_score": None if score is None else float(score), "emotion": emotion, "probs": prob_dict}
