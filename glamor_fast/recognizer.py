"""``EmotionRecognizer``: emotion recognition from Python, for images, batches of images and videos.

    from glamor_fast import EmotionRecognizer
    rec = EmotionRecognizer("runs/quickstart/best.pt")
    for face in rec.predict("photo.jpg"):
        print(face.box, face.emotion, face.probs[face.emotion])

Each face found by the detector (or given as ``boxes=``) is classified with its own context: the
frame with that face blacked out (``glamor_fast.predict.model``). Faces are returned as ``Face``
records, a small dataclass rather than a dict: attributes a reader can see (``face.emotion``)
and an editor can complete, one place that documents the fields, and a numpy attention map that
a JSON dict could not hold; ``Face.to_dict()`` gives the JSON-ready dict (the fields of
``predict``'s predictions.jsonl).

The model call is one method, ``forward(face, context)``, on preprocessed batches; behind it sits
the network the checkpoint names: a project checkpoint (PyTorch) or an exported ``.onnx`` file
(onnxruntime, optional extra ``[onnx]``).
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import cv2
import numpy as np
import torch

from glamor_fast.data.caer import read_image
from glamor_fast.data.faces import Detection, make_detector
from glamor_fast.data.transforms import CONTEXT_CROP, FACE_SIZE, clip_box, preprocess
from glamor_fast.predict.model import load_net
from glamor_fast.predict.tracking import FaceTracker, ProbSmoother

DEFAULT_DETECT_SIDE = 480  # Haar runs on video frames downscaled to this longer side
IMAGE_DETECT_SIDE = 1280   # ... and on still images downscaled to at most this (at least detect_side)
DEFAULT_MIN_FACE = 40      # smaller faces are ignored (the model sees faces at 96x96); also halves Haar's time
DEFAULT_EVERY = 5          # videos: detect on every 5th frame; the tracker fills the frames between
FLOW_SIDE = 480            # videos: boxes follow the faces' motion between detections on a grey copy this size
MAX_FACES = 32             # faces per forward pass at most (bounds memory for large batches and crowds)

ImageInput = Union[str, os.PathLike, np.ndarray, "PIL.Image.Image"]  # noqa: F821 (PIL is optional)


@dataclass
class Face:
    """One face: ``box`` [x1, y1, x2, y2] in pixels of the image (x2, y2 exclusive),
    ``detector_score`` (None for Haar and for caller-given boxes), ``emotion`` (the most probable
    class), ``probs`` {class: probability}, ``attention`` (h, w) float32 on the context crop's
    feature grid when asked for (None otherwise, or for a model without attention), ``track``: the
    face's track id in a video (None for still images)."""
    box: list
    detector_score: Optional[float]
    emotion: str
    probs: dict
    attention: Optional[np.ndarray] = None
    track: Optional[int] = None

    def to_dict(self) -> dict:
        """A JSON-ready dict: box, detector_score, emotion, probs (rounded to 6 decimals), track;
        ``attention`` as nested lists when present."""
        out = {"track": self.track, "box": [int(v) for v in self.box],
               "detector_score": None if self.detector_score is None else float(self.detector_score),
               "emotion": self.emotion, "probs": {c: round(float(p), 6) for c, p in self.probs.items()}}
        if self.attention is not None:
            out["attention"] = np.round(self.attention.astype(float), 6).tolist()
        return out


@dataclass
class VideoFrame:
    """One frame of ``predict_video``: its ``index`` (from 0), ``time_s`` (index / the video's
    frame rate), ``faces`` (with track ids) and ``image``, the frame itself (RGB uint8 (H, W, 3))."""
    index: int
    time_s: float
    faces: list = field(default_factory=list)
    image: Optional[np.ndarray] = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"frame": self.index, "time_s": round(self.time_s, 6), "faces": [f.to_dict() for f in self.faces]}


def as_rgb(image: ImageInput, what: str = "image") -> np.ndarray:
    """A path (read with OpenCV: grey, RGBA, 16-bit and EXIF-rotated files are handled), an RGB
    uint8 (H, W, 3) array (used as is) or a PIL image (converted to RGB, EXIF orientation applied)
    -> RGB uint8 (H, W, 3). FileNotFoundError / ValueError naming ``what`` otherwise."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(image, pil.Image):
        from PIL import ImageOps

        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise ValueError(f"{what}: expected an RGB uint8 array (H, W, 3), got {image.dtype} {tuple(image.shape)}")
        return image
    raise ValueError(f"{what}: expected a file path, an RGB uint8 numpy array (H, W, 3) or a PIL image, "
                     f"got {type(image).__name__}")


def _check_boxes(boxes, image: np.ndarray, what: str) -> list:
    """Caller-given boxes [[x1, y1, x2, y2], ...] -> clipped int boxes; ValueError naming the bad one."""
    h, w = image.shape[:2]
    try:
        boxes = [tuple(float(v) for v in b) for b in boxes]
    except (TypeError, ValueError):
        raise ValueError(f"{what}: boxes must be a list of [x1, y1, x2, y2] numbers, got {boxes!r}") from None
    out = []
    for b in boxes:
        clipped = clip_box(b, h, w) if len(b) == 4 and b[2] > b[0] and b[3] > b[1] else None
        if clipped is None:
            raise ValueError(f"{what}: box {list(b)} is not [x1, y1, x2, y2] with x2 > x1 and y2 > y1 inside "
                             f"the {w}x{h} image")
        out.append(clipped)
    return out


def _net_settings(net) -> tuple[bool, Optional[str]]:
    """(face visible in the context, attention kind: "gla", "ca", "none" or None when unknown) of a
    network: ``TorchGlamorNet``'s attributes, or the metadata an ONNX export carries
    (``preprocessing["face_visible_in_context"]``, ``metadata["attention"]``)."""
    if hasattr(net, "face_visible"):
        return bool(net.face_visible), net.attention_kind
    preprocessing = getattr(net, "preprocessing", None) or {}
    metadata = getattr(net, "metadata", None) or {}
    return bool(preprocessing.get("face_visible_in_context", False)), metadata.get("attention")


def check_video_options(every: int, smooth: Optional[float], batch_frames: int) -> None:
    """ValueError naming the first bad one of ``predict_video``'s options."""
    if int(every) < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if smooth is not None and not smooth > 0:
        raise ValueError(f"smooth must be a time constant > 0 seconds, got {smooth}")
    if int(batch_frames) < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")


class EmotionRecognizer:
    """Load a checkpoint once; find and classify every face of images and videos.

    Args:
        checkpoint: a project checkpoint (``glamor-fast train``, ``import-tf``) or an exported
            ``.onnx`` file (run with onnxruntime on the CPU; ``pip install ".[onnx]"``).
        detector: a name of ``glamor_fast.data.faces.DETECTORS`` ("haar", "dlib-cnn", "dlib-hog")
            or a callable(image RGB uint8 (H, W, 3)) -> list[Detection].
        device: "auto" (CUDA when available), "cpu", "cuda", ...
        backend: the GLA backend ("auto": the fastest available; None: the checkpoint's).
        min_face: faces whose detected box is under this many pixels (either side) are ignored.
        detect_side: Haar only: video frames are searched on a copy downscaled to this longer side
            (None: full size); still images on max(detect_side, 1280).
    Raises CheckpointError (a file that is not a checkpoint), FileNotFoundError, ValueError (a
    bad option), MissingExtraError (a detector's or onnxruntime's extra is not installed).
    """

    def __init__(self, checkpoint, detector: Union[str, Callable] = "haar", device: str = "auto",
                 backend: Optional[str] = "auto", *, min_face: int = DEFAULT_MIN_FACE,
                 detect_side: Optional[int] = DEFAULT_DETECT_SIDE):
        if int(min_face) < 1:
            raise ValueError(f"min_face must be >= 1 pixel, got {min_face}")
        self.checkpoint = checkpoint
        self.net = load_net(checkpoint, device=device, backend=backend)
        self.classes = list(self.net.classes)
        self.face_visible, self.attention_kind = _net_settings(self.net)
        self.min_face = int(min_face)
        if detector == "haar":
            image_side = None if detect_side is None else max(detect_side, IMAGE_DETECT_SIDE)
            self.video_detector = make_detector("haar", max_side=detect_side, min_size=self.min_face)
            self.image_detector = make_detector("haar", max_side=image_side, min_size=self.min_face)
        elif isinstance(detector, str):
            self.video_detector = self.image_detector = make_detector(detector)
        elif callable(detector):
            self.video_detector = self.image_detector = detector
        else:
            raise ValueError(f"detector: expected a detector name or a callable, got {type(detector).__name__}")

    # -- the model call ------------------------------------------------------------------------
    def forward(self, face, context) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """face (B, 3, 96, 96), context (B, 3, 112, 112): float32 in [0, 1], numpy or CPU tensors
        -> (probs (B, C) float32 numpy, attn (B, h, w) float32 numpy or None)."""
        face, context = (torch.as_tensor(np.asarray(x, np.float32)) for x in (face, context))
        n = face.shape[0] if face.ndim else 0
        want_face, want_context = (3, FACE_SIZE, FACE_SIZE), (3, CONTEXT_CROP, CONTEXT_CROP)
        if tuple(face.shape[1:]) != want_face or tuple(context.shape) != (n, *want_context):
            raise ValueError(f"forward: expected face (B, {', '.join(map(str, want_face))}) and context "
                             f"(B, {', '.join(map(str, want_context))}), got {tuple(face.shape)} and "
                             f"{tuple(context.shape)}")
        logits, attn = self.net(face, context)
        probs = torch.softmax(logits.float(), 1).numpy()
        return probs, None if attn is None else np.asarray(attn, np.float32)

    def classify(self, frames: Sequence[np.ndarray], boxes: Sequence) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Faces boxes[i] of frames[i] (RGB uint8; one frame object may appear once per face)
        through the model, at most MAX_FACES per forward pass -> (probs (n, C), attn (n, h, w) or None)."""
        if not boxes:
            return np.zeros((0, len(self.classes)), np.float32), None
        probs, attn = [], []
        for start in range(0, len(boxes), MAX_FACES):
            pairs = [preprocess(f, b, face_visible=self.face_visible)
                     for f, b in zip(frames[start:start + MAX_FACES], boxes[start:start + MAX_FACES])]
            p, a = self.forward(np.stack([x[0] for x in pairs]), np.stack([x[1] for x in pairs]))
            probs.append(p)
            attn.append(a)
        return np.concatenate(probs), None if attn[0] is None else np.concatenate(attn)

    # -- still images --------------------------------------------------------------------------
    def detect(self, image: np.ndarray, video: bool = False) -> list[Detection]:
        """The detector's faces of ``image`` (RGB uint8) of at least ``min_face`` pixels a side."""
        found = (self.video_detector if video else self.image_detector)(image)
        out = []
        for d in found:
            box, score = d[0], d[1]
            if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"the face detector returned an invalid box {tuple(box)}")
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_face:
                out.append(Detection(tuple(int(v) for v in box), None if score is None else float(score)))
        return out

    def predict(self, image: ImageInput, attention: bool = False, boxes: Optional[Sequence] = None) -> list[Face]:
        """Every face of one image (a path, an RGB uint8 (H, W, 3) array or a PIL image), left to right.

        ``boxes``: [[x1, y1, x2, y2], ...] in pixels to classify instead of detecting (clipped to
        the image; their ``detector_score`` is None). ``attention``: fill ``Face.attention``.
        """
        return self.predict_batch([image], attention=attention, boxes=None if boxes is None else [boxes])[0]

    def predict_batch(self, images: Sequence[ImageInput], attention: bool = False,
                      boxes: Optional[Sequence[Sequence]] = None) -> list[list[Face]]:
        """``predict`` for many images (a list, or an (N, H, W, 3) uint8 array): the faces of all of
        them go through the model together (MAX_FACES per forward pass). ``boxes``: one list of
        boxes per image (None: detect)."""
        self._check_attention(attention)
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)  # (N, H, W, 3): N images
        if isinstance(images, (str, os.PathLike, np.ndarray)):
            raise ValueError("predict_batch: expected a list of images (or an (N, H, W, 3) array); "
                             "use predict() for one image")
        if boxes is not None and len(boxes) != len(images):
            raise ValueError(f"predict_batch: {len(boxes)} box lists for {len(images)} images")
        rgb = [as_rgb(img, f"image {i}" if not isinstance(img, (str, os.PathLike)) else str(img))
               for i, img in enumerate(images)]
        found = []
        for i, img in enumerate(rgb):
            if boxes is None or boxes[i] is None:
                found.append(self.detect(img))
            else:
                found.append([Detection(b, None) for b in _check_boxes(boxes[i], img, f"image {i}")])
        flat = [(i, d) for i, ds in enumerate(found) for d in ds]
        probs, attn = self.classify([rgb[i] for i, _ in flat], [d.box for _, d in flat])
        out: list[list[Face]] = [[] for _ in rgb]
        for k, (i, d) in enumerate(flat):
            out[i].append(self._face(d.box, d.score, probs[k], attn[k] if attention and attn is not None else None))
        return out

    # -- videos --------------------------------------------------------------------------------
    def predict_video(self, source, every: int = DEFAULT_EVERY, attention: bool = False,
                      smooth: Optional[float] = None, batch_frames: int = 8) -> "VideoPredictions":
        """Every frame of a video file (a path, or an open ``glamor_fast.predict.inputs.VideoReader``),
        as ``VideoFrame`` records in order (an iterable; the file is opened now and decoded one
        frame at a time while iterating).

        Faces are detected every ``every`` frames and tracked in between (stable ``Face.track``
        ids; between detections each box follows the motion of the image inside it, by optical
        flow, or failing that carries on with the face's last motion). ``smooth``: time constant in seconds
        of per-track exponential smoothing of the probabilities (None: off). The faces of
        ``batch_frames`` frames go through the model in one forward pass. A video that ends
        before the frame count its container states (by more than 1 frame and 1%) gives a
        warning with the count read.
        """
        from glamor_fast.predict.inputs import VideoReader

        check_video_options(every, smooth, batch_frames)
        self._check_attention(attention)
        if isinstance(source, VideoReader):
            reader = source
        elif not Path(source).is_file():
            raise FileNotFoundError(f"video file not found: {source}")
        else:
            reader = VideoReader(source)
        return VideoPredictions(self, reader, int(every), attention, smooth, int(batch_frames))

    # -- helpers -------------------------------------------------------------------------------
    def _check_attention(self, attention: bool) -> None:
        if attention and self.attention_kind not in ("gla", "ca", None):
            raise ValueError(f"attention maps need a model with GLA or CA attention; checkpoint {self.checkpoint} "
                             f"has attention {self.attention_kind!r}")

    def _face(self, box, score, probs: np.ndarray, attn: Optional[np.ndarray], track: Optional[int] = None) -> Face:
        return Face([int(v) for v in box], score, self.classes[int(np.argmax(probs))],
                    {c: float(p) for c, p in zip(self.classes, probs)}, attn, track)


class VideoPredictions:
    """The frames of one video as ``VideoFrame`` records (iterate once). ``fps``, ``size`` (width,
    height) and ``frame_count`` (the container's claim, possibly 0) are known before iterating;
    ``frames_read`` counts the frames decoded so far. ``close()`` releases the file early."""

    def __init__(self, rec: EmotionRecognizer, reader, every: int, attention: bool, smooth: Optional[float],
                 batch_frames: int):
        self.rec, self.reader, self.every, self.attention = rec, reader, every, attention
        self.smoother = ProbSmoother(smooth) if smooth else None
        self.batch_frames = batch_frames
        self.path, self.fps, self.size, self.frame_count = reader.path, reader.fps, reader.size, reader.frame_count
        self.frames_read = 0

    def __iter__(self) -> Iterator[VideoFrame]:
        tracker = FaceTracker()
        buffer: list[tuple[VideoFrame, list]] = []
        n_faces, prev_gray = 0, None
        scale = min(1.0, FLOW_SIDE / max(self.size))
        try:
            for index, image in enumerate(self.reader):
                self.frames_read = index + 1
                if (image.shape[1], image.shape[0]) != self.size:
                    raise ValueError(f"{self.path}: frame {index} is {image.shape[1]}x{image.shape[0]}, "
                                     f"the video {self.size[0]}x{self.size[1]}")
                h, w = image.shape[:2]
                gray = None
                if self.every > 1:  # between detections the boxes follow the image's motion
                    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
                    if scale < 1.0:
                        gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
                if index % self.every == 0:
                    tracker.update(self.rec.detect(image, video=True), frame=index)
                elif prev_gray is not None:
                    tracker.follow(prev_gray, gray, index, scale)
                prev_gray = gray
                tracks = []
                for t in tracker.current():
                    box = clip_box(t.box_at(index), h, w)
                    if box is not None:
                        tracks.append((t.id, box, t.score))
                buffer.append((VideoFrame(index, index / self.fps, [], image), tracks))
                n_faces += len(tracks)
                if len(buffer) >= self.batch_frames or n_faces >= MAX_FACES:
                    yield from self._classify(buffer)
                    buffer, n_faces = [], 0
            yield from self._classify(buffer)
        finally:
            self.reader.close()
        # The container's count can be an estimate (duration x rate) off by a frame or so: a
        # shortfall of more than 1 frame and 1% is reported.
        if self.frame_count - self.frames_read > max(1, self.frame_count // 100):
            warnings.warn(f"{self.path}: the video ends after {self.frames_read} of the {self.frame_count} frames its "
                          "container states (cut short or damaged); those frames were processed", stacklevel=2)

    def _classify(self, buffer: list) -> Iterator[VideoFrame]:
        pairs = [(vf, t) for vf, tracks in buffer for t in tracks]
        probs, attn = self.rec.classify([vf.image for vf, _ in pairs], [t[1] for _, t in pairs])
        for k, (vf, (track, box, score)) in enumerate(pairs):
            p = probs[k] if self.smoother is None else self.smoother(track, vf.time_s, probs[k])
            vf.faces.append(self.rec._face(box, score, p, attn[k] if self.attention and attn is not None else None,
                                           track))
        for vf, _ in buffer:
            yield vf

    def close(self) -> None:
        self.reader.close()
