"""Emotion recognition on real footage: every face of images, folders and videos, annotated.

``predict(inputs, checkpoint, out_dir)`` is the library entry point of ``glamor-fast predict``
(files in, annotated files and JSON lines out), built on ``glamor_fast.EmotionRecognizer`` (the
Python API: images, arrays and videos in, face records out), which is built on this package's
``model`` and ``tracking``. ``FaceTracker`` and ``ProbSmoother`` are the video helpers. See
``run`` for the outputs.
"""
from .tracking import FaceTracker, ProbSmoother

_FROM_RUN = {"predict", "PredictResult", "DEFAULT_CHECKPOINT", "DEFAULT_EVERY", "JSONL_NAME", "RECORD_FIELDS"}
__all__ = ["FaceTracker", "ProbSmoother", *sorted(_FROM_RUN)]


def __getattr__(name):
    # ``run`` imports glamor_fast.recognizer, which imports this package's model and tracking
    # modules: importing ``run`` here at once would make that a cycle.
    if name in _FROM_RUN:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'glamor_fast.predict' has no attribute {name!r}")
