"""Emotion recognition on real footage: every face of images, folders and videos, annotated.

``predict(inputs, checkpoint, out_dir)`` is the library entry point (``glamor-fast predict`` is its
command line); ``FaceClassifier`` scores faces of frames you already hold; ``FaceTracker`` and
``ProbSmoother`` are the video helpers. See ``run`` for the outputs.
"""
from .model import FaceClassifier, FaceScores
from .run import DEFAULT_CHECKPOINT, DEFAULT_EVERY, JSONL_NAME, RECORD_FIELDS, PredictResult, predict
from .tracking import FaceTracker, ProbSmoother

__all__ = ["predict", "PredictResult", "FaceClassifier", "FaceScores", "FaceTracker", "ProbSmoother",
           "DEFAULT_CHECKPOINT", "DEFAULT_EVERY", "JSONL_NAME", "RECORD_FIELDS"]
