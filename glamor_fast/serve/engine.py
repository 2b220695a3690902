"""The model behind the server: face detection, and the calls that classify faces (the seam).

The server touches the model in two places only:

- ``Engine.prepare(image, faces)``, in the worker pool (one image, in parallel with others): the
  model's inputs for each face of an RGB uint8 (H, W, 3) image, ``faces`` = [(box, score)] with
  boxes ``(x1, y1, x2, y2)`` int pixels, x2/y2 exclusive;
- ``Engine.recognize(items)``, on the batcher's model thread: ``items`` = [(prepared, faces)]
  from many requests, all their faces in one forward pass -> per item, one face record per box
  in the record format of ``predict`` (``box``, ``detector_score``, ``emotion``, ``probs``).

Preparing (crops, masked contexts, resizes: Python and OpenCV calls that each take the GIL) is
kept off the model thread, whose forward pass then takes the GIL once. Detection
(``Engine.detect``) also runs in the pool.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from glamor_fast.data.faces import make_detector
from glamor_fast.data.transforms import CONTEXT_CROP, FACE_SIZE, Box, preprocess
from glamor_fast.predict.records import face_record
from glamor_fast.recognizer import EmotionRecognizer
from glamor_fast.predict.run import DEFAULT_DETECT_SIDE, DEFAULT_MIN_FACE, IMAGE_DETECT_SIDE

FaceBoxes = Sequence[tuple[Box, Optional[float]]]   # [(box, detector score or None)]


class Engine:
    """A checkpoint loaded once, plus a face detector per worker thread.

    ``detector``: a name of ``glamor_fast.data.faces.DETECTORS``. Still images are searched on a
    copy downscaled to at most ``IMAGE_DETECT_SIDE`` pixels, video frames to ``DEFAULT_DETECT_SIDE``
    (Haar only, as in ``predict``); faces smaller than ``min_face`` pixels are ignored.
    """

    def __init__(self, checkpoint, device: str = "auto", backend: Optional[str] = None, detector: str = "haar",
                 min_face: int = DEFAULT_MIN_FACE, trace: bool = True):
        self.checkpoint = Path(checkpoint)
        # The recognizer's network (a checkpoint, or an exported .onnx file) and its settings;
        # detection stays here, one detector per worker thread.
        self.recognizer = EmotionRecognizer(checkpoint, detector=lambda image: [], device=device,
                                            backend="auto" if backend is None else backend)
        self.net = self.recognizer.net
        self.eager_model = getattr(self.net, "model", None)
        self.traced = trace and self.eager_model is not None and trace_classifier(self.net)
        self.classes = list(self.recognizer.classes)
        self.detector_name, self.min_face = detector, int(min_face)
        if detector != "haar":
            make_detector(detector)  # an unknown name or a missing extra is reported now, not at a request
        self._local = threading.local()

    def _detector(self, video: bool):
        """Detectors hold OpenCV state that is not safe to share between threads: one per thread."""
        key = "video" if video else "image"
        found = getattr(self._local, key, None)
        if found is None:
            if self.detector_name == "haar":
                side = DEFAULT_DETECT_SIDE if video else IMAGE_DETECT_SIDE
                found = make_detector("haar", max_side=side, min_size=self.min_face)
            else:
                found = make_detector(self.detector_name)
            setattr(self._local, key, found)
        return found

    def detect(self, image: np.ndarray, video: bool = False) -> list[tuple[Box, Optional[float]]]:
        """Faces of one RGB uint8 image: [(box, score)], left to right, smaller than ``min_face`` left out."""
        out = []
        for box, score in self._detector(video)(image):
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_face:
                out.append((tuple(int(v) for v in box), score))
        return out

    def prepare(self, image: np.ndarray, faces: FaceBoxes) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs of ``image``'s faces, as in evaluation: (face (n, 3, 96, 96), context (n, 3, 112, 112)) float32."""
        pairs = [preprocess(image, box, train=False, face_visible=self.recognizer.face_visible) for box, _ in faces]
        if not pairs:
            return (np.zeros((0, 3, FACE_SIZE, FACE_SIZE), np.float32),
                    np.zeros((0, 3, CONTEXT_CROP, CONTEXT_CROP), np.float32))
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    @torch.inference_mode()
    def recognize(self, items: Sequence[tuple[tuple[np.ndarray, np.ndarray], FaceBoxes]]) -> list[list[dict]]:
        """Every face of every ``(prepare(image, faces), faces)`` item in one forward pass -> per item,
        its face records in box order (``EmotionRecognizer.forward`` on the prepared inputs)."""
        face = np.concatenate([p[0] for p, _ in items])
        context = np.concatenate([p[1] for p, _ in items])
        probs = self.recognizer.forward(face, context)[0]
        out, k = [], 0
        for _, faces in items:
            out.append([face_record(box, score, self.classes, probs[k + i]) for i, (box, score) in enumerate(faces)])
            k += len(faces)
        return out

    def info(self) -> dict:
        """What ``GET /v1/info`` says about the model."""
        from glamor_fast import GlobalLocalAttention

        modules = self.eager_model.modules() if self.eager_model is not None else ()
        gla = [m.backend for m in modules if isinstance(m, GlobalLocalAttention)]
        return {"checkpoint": self.checkpoint.name, "classes": self.classes, "attention": self.recognizer.attention_kind,
                "gla_backend": gla[0] if gla else None, "traced": bool(self.traced),
                "device": str(getattr(self.net, "device", "cpu")), "detector": self.detector_name,
                "min_face": self.min_face}


class _TracedLogits(torch.nn.Module):
    """A traced forward that answers like ``model(face, context, return_details=True)`` without the maps."""

    def __init__(self, traced):
        super().__init__()
        self.traced = traced

    def forward(self, face, context, return_details=False):
        logits = self.traced(face, context)
        return (logits, None, None) if return_details else logits


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, face, context):
        return self.model(face, context, return_details=True)[0]


def trace_classifier(classifier) -> bool:
    """Swap the classifier's model for a traced, frozen copy of its logits (no attention maps).

    The traced graph runs in C++ from start to end (the project's ops are C++ operators), so a
    forward pass takes the GIL once instead of once per op: with the event loop and the detection
    pool busy in other threads, the eager model waited for the GIL between its ops. The copy is
    checked against the eager model on a random batch; a model that cannot be traced is kept eager
    with a warning (logger ``glamor_fast``). Returns whether the traced copy is in use.
    """
    import logging
    import warnings

    model = classifier.model
    cl = torch.channels_last
    face = torch.rand(2, 3, 96, 96, device=classifier.device).contiguous(memory_format=cl)
    context = torch.rand(2, 3, 112, 112, device=classifier.device).contiguous(memory_format=cl)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in torch 2.13; still works
            traced = torch.jit.freeze(torch.jit.trace(_Logits(model).eval(), (face, context), check_trace=False))
            small = (face[:1], context[:1])
            if not (torch.allclose(traced(face, context), model(face, context), atol=1e-4, rtol=1e-4)
                    and torch.allclose(traced(*small), model(*small), atol=1e-4, rtol=1e-4)):
                raise RuntimeError("its logits differ from the eager model's")
    except Exception as exc:  # noqa: BLE001 - any tracing failure leaves the eager model, said once
        logging.getLogger("glamor_fast").warning("serve: the model is not traced (%s); running it eagerly",
                                                 " ".join(str(exc).split())[:200])
        return False
    classifier.model = _TracedLogits(traced)
    return True
