"""Datasets and preprocessing: CAER-S layout loader, face detection, NCAER-S builder, built-in dataset."""
from .builtin import generate_builtin
from .caer import EMOTIONS, CAERSDataset, CorruptImageError, read_annotation_file, read_box_file, read_image
from .box_files import detect_faces
from .faces import HaarFaceDetector
from .ncaer import DEFAULT_PARTS, build_ncaer
from .transforms import crop_context, crop_face, mask_face, preprocess

__all__ = [
    "EMOTIONS", "CAERSDataset", "CorruptImageError", "read_annotation_file", "read_box_file", "read_image",
    "HaarFaceDetector", "detect_faces", "DEFAULT_PARTS", "build_ncaer", "generate_builtin",
    "crop_context", "crop_face", "mask_face", "preprocess",
]
