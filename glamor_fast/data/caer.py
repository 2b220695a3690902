"""The CAER-S dataset layout and loader (also used for NCAER-S and the built-in dataset).

On disk::

    root/{split}/<Emotion>/*.png|*.jpg          images; <Emotion> one of EMOTIONS, any case,
                                                "Angry" accepted for "Anger"
    root/crop/{split}/<Emotion>/<stem>.txt      optional per-image face box "x1,y1,x2,y2"
                                                (the GLAMOR-Net release layout; an empty
                                                file means "no face found")
    root/annotations_{split}.txt                or one annotation file, lines
                                                "relpath,label,x1,y1,x2,y2" (relpath relative
                                                to root; label an index or a class name; empty
                                                box fields mean no face)

Boxes are in pixels of the stored image, x2/y2 exclusive. An image without a box gets a zero
face and an unmasked context by default (as in the authors' code), or is dropped, or gets a
detected box (``no_box``, see no_box.py); such images are counted in one warning per dataset.
"""
from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .no_box import apply_no_box_policy, check_policy
from .transforms import Box, preprocess

EMOTIONS = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
# Lower-case folder spellings seen in copies of CAER/CAER-S -> label.
CLASS_ALIASES = {name.lower(): i for i, name in enumerate(EMOTIONS)}
CLASS_ALIASES.update({"angry": 0, "happiness": 3, "sadness": 5, "surprised": 6})
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CROP_DIR = "crop"

BoxSource = Union[None, str, os.PathLike, Mapping[str, Optional[Sequence[float]]]]


class CorruptImageError(ValueError):
    """An image file that OpenCV cannot decode."""


def class_index(name: str) -> int:
    """Label of a class folder name (case-insensitive; "Angry" -> Anger). ValueError if unknown."""
    try:
        return CLASS_ALIASES[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown emotion class {name!r}; expected one of {', '.join(EMOTIONS)} (any case, or 'Angry')"
        ) from None


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3) with OpenCV; clear errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    # fromfile + imdecode also handles non-ASCII paths
    return decode_image(np.fromfile(str(path), dtype=np.uint8), path)


def decode_image(data: np.ndarray, path: Union[str, os.PathLike]) -> np.ndarray:
    """Encoded file bytes (uint8 1-D) -> RGB uint8 (H, W, 3); CorruptImageError naming ``path``."""
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise CorruptImageError(f"cannot decode image {path}: the file is corrupt or not a PNG/JPEG image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def is_readable_image(path: Union[str, os.PathLike]) -> bool:
    """Whether OpenCV decodes ``path`` (as read_image would; decoded at 1/8 scale in grey, for speed)."""
    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    return data is not None and data.size > 0 and cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None


def parse_box(fields: Sequence[str], where: str) -> Optional[Box]:
    """Four numbers "x1,y1,x2,y2" -> int box; all-empty -> None. ``where`` names the source in errors."""
    fields = [f.strip() for f in fields]
    if all(f == "" for f in fields):
        return None
    try:
        if len(fields) != 4:
            raise ValueError
        x1, y1, x2, y2 = (int(round(float(f))) for f in fields)
    except ValueError:
        raise ValueError(f"{where}: expected a face box 'x1,y1,x2,y2', got {','.join(fields)!r}") from None
    if x2 <= x1 or y2 <= y1 or x2 <= 0 or y2 <= 0:
        raise ValueError(f"{where}: empty or negative face box {(x1, y1, x2, y2)} (need x1 < x2, y1 < y2)")
    return x1, y1, x2, y2


def read_box_file(path: Union[str, os.PathLike]) -> Optional[Box]:
    """A per-image box file: "x1,y1,x2,y2" (commas or spaces); an empty file means no face."""
    text = Path(path).read_text().strip()
    if not text:
        return None
    return parse_box(re.split(r"[,\s]+", text), str(path))


def write_box_file(path: Union[str, os.PathLike], box: Optional[Sequence[int]]) -> None:
    """Write a per-image box file atomically (temporary file, then rename); None -> empty file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("" if box is None else ",".join(str(int(v)) for v in box) + "\n")
    os.replace(tmp, path)


def safe_relpath(rel: str, where: str) -> str:
    """Normalise a path relative to the dataset root; ValueError if it could leave the root."""
    norm = posixpath.normpath(rel.strip().replace("\\", "/"))
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or norm == ".." or norm.startswith("../") or norm == ".":
        raise ValueError(f"{where}: path {rel!r} is outside the dataset root")
    return norm


def read_annotation_file(path: Union[str, os.PathLike]) -> dict[str, tuple[Optional[int], Optional[Box]]]:
    """Lines "relpath,label,x1,y1,x2,y2" -> {relpath: (label, box)}.

    Blank lines, lines starting with '#' and a header line are skipped; the label may be an index
    or a class name, or empty; missing or empty box fields mean no face. Raises ValueError naming
    the file and line for a path outside the root, a bad label or box, or a duplicate path.
    """
    path = Path(path)
    out: dict[str, tuple[Optional[int], Optional[Box]]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        where = f"{path}:{lineno}"
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.rsplit(",", 5) if line.count(",") >= 5 else line.split(",")
        if len(fields) not in (2, 6):
            raise ValueError(f"{where}: expected 'relpath,label,x1,y1,x2,y2', got {line!r}")
        if fields[0].strip().lower() in ("relpath", "path", "file", "filename", "image"):
            continue  # header
        rel = safe_relpath(fields[0], where)
        label_text = fields[1].strip()
        if label_text == "":
            label = None
        elif re.fullmatch(r"-?\d+", label_text):
            label = int(label_text)
            if not 0 <= label < len(EMOTIONS):
                raise ValueError(f"{where}: label {label} is not in [0, {len(EMOTIONS)})")
        else:
            try:
                label = class_index(label_text)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        box = parse_box(fields[2:], where) if len(fields) == 6 else None
        if rel in out:
            raise ValueError(f"{where}: {rel!r} appears twice")
        out[rel] = (label, box)
    return out


def scan_split(root: Union[str, os.PathLike], split: str) -> list[tuple[str, int]]:
    """(relpath, label) for every image in root/split/<Emotion>/, sorted by label then path.

    relpath is posix and relative to root, e.g. "train/Angry/0001.png".
    """
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise FileNotFoundError(f"split folder {split_dir} not found (root has: {have or 'nothing'})")
    class_dirs = []
    for class_dir in (p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            class_dirs.append((class_index(class_dir.name), class_dir.name, class_dir))
        except ValueError as err:
            raise ValueError(f"{class_dir}: {err}") from None
    samples = []
    for label, _, class_dir in sorted(class_dirs):  # by label, then folder name
        for f in sorted(class_dir.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append((f"{split}/{class_dir.name}/{f.name}", label))
    if not samples:
        raise ValueError(f"no images (*.png, *.jpg) found under {split_dir}/<Emotion>/")
    return samples


def box_file_for(root: Union[str, os.PathLike], relpath: str) -> Path:
    """root/crop/<split>/<class>/<stem>.txt for the image at relpath "<split>/<class>/<file>"."""
    rel = Path(relpath)
    return Path(root) / CROP_DIR / rel.parent / (rel.stem + ".txt")


class SampleList(Dataset):
    """What every CAER-S-layout dataset has: ``root``, ``samples`` [(relpath, label)], ``epoch``."""

    classes = EMOTIONS

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    @property
    def epoch(self) -> int:
        return int(self._shared_epoch[0])

    @epoch.setter
    def epoch(self, value: int) -> None:
        # In shared memory: DataLoader workers (persistent ones too) see set_epoch of the main process.
        if "_shared_epoch" not in self.__dict__:
            self._shared_epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._shared_epoch[0] = int(value)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream for this epoch (training only)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def image_path(self, index: int) -> Path:
        return self.root / self.samples[index][0]


class CAERSDataset(SampleList):
    """CAER-S-layout images -> dicts for GLAMOR-Net.

    Args:
        root: dataset root holding ``{split}/<Emotion>/`` image folders.
        split: the split folder name ("train", "test", "val", ...).
        train: training augmentation (random context crop, face flip + rotation); else eval.
        boxes: None = auto (``root/crop/{split}`` per-image files if that folder exists, else
            ``root/annotations_{split}.txt`` if it exists, else no boxes); a path to an
            annotation file; or a dict {relpath: (x1, y1, x2, y2) or None} from any detector.
        face_visible: keep the face in the context image (the paper's setting (iii)).
        normalize: ImageNet mean/std normalisation after scaling to [0, 1].
        seed: training augmentation for item i in epoch e uses Generator([seed, e, i]);
            call ``set_epoch`` each epoch for fresh augmentation.
        no_box: images without a face box: "unmasked" (authors'), "drop" or "detect" (see
            ``glamor_fast.data.no_box``); one warning says how many and what was done.
    Item: {"face": float32 (3, 96, 96), "context": float32 (3, 112, 112), "label": int,
        "path": relpath str, "has_face": bool}.
    Attributes: classes (EMOTIONS), samples [(relpath, label)], boxes [box or None],
        box_source (str, where the boxes came from), root (Path).
    """

    def __init__(self, root, split: str, train: bool = False, boxes: BoxSource = None,
                 face_visible: bool = False, normalize: bool = False, seed: int = 0,
                 no_box: str = "unmasked"):
        self.root = Path(root)
        self.split = split
        self.train = bool(train)
        self.face_visible = bool(face_visible)
        self.normalize = bool(normalize)
        self.seed = int(seed)
        self.epoch = 0
        self.samples = scan_split(self.root, split)
        self.boxes, self.box_source = self._load_boxes(boxes)
        self.no_box = check_policy(no_box)
        self.samples, self.boxes, _ = apply_no_box_policy(
            self.samples, self.boxes, self.no_box, self.load_image,
            f"CAERSDataset({self.root}, {split!r}) with boxes from {self.box_source}")

    def drop_unreadable(self) -> list[str]:
        """Remove the items whose image cannot be decoded (corrupt, empty, vanished); returns their relpaths.

        Decodes every image once (reduced), so it costs about a fast pass over the split.
        """
        keep = [is_readable_image(self.root / rel) for rel, _ in self.samples]
        dropped = [rel for (rel, _), ok in zip(self.samples, keep) if not ok]
        self.samples = [s for s, ok in zip(self.samples, keep) if ok]
        self.boxes = [b for b, ok in zip(self.boxes, keep) if ok]
        return dropped

    def _load_boxes(self, boxes: BoxSource) -> tuple[list[Optional[Box]], str]:
        if isinstance(boxes, Mapping):
            table = {}
            for rel, box in boxes.items():
                key = safe_relpath(str(rel), "boxes")
                table[key] = None if box is None else parse_box([str(v) for v in box], f"boxes[{rel!r}]")
            return [table.get(rel) for rel, _ in self.samples], "boxes dict"
        if boxes is not None:
            return self._from_annotation_file(Path(boxes))
        crop_dir = self.root / CROP_DIR / self.split
        if crop_dir.is_dir():
            return self._from_box_files(), f"per-image box files under {crop_dir}"
        ann = self.root / f"annotations_{self.split}.txt"
        if ann.is_file():
            return self._from_annotation_file(ann)
        return [None] * len(self.samples), f"no {crop_dir} folder and no {ann} file"

    def _from_box_files(self) -> list[Optional[Box]]:
        stems: dict[Path, str] = {}
        out = []
        for rel, _ in self.samples:
            box_path = box_file_for(self.root, rel)
            if box_path in stems:
                raise ValueError(f"{rel} and {stems[box_path]} share the box file {box_path}; rename one of them")
            stems[box_path] = rel
            out.append(read_box_file(box_path) if box_path.is_file() else None)
        return out

    def _from_annotation_file(self, path: Path) -> tuple[list[Optional[Box]], str]:
        if not path.is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
        table = read_annotation_file(path)
        out = []
        for rel, label in self.samples:
            ann_label, box = table.get(rel, (None, None))
            if ann_label is not None and ann_label != label:
                raise ValueError(
                    f"{path}: {rel} is labelled {EMOTIONS[ann_label]} but lies in a folder of class {EMOTIONS[label]}"
                )
            out.append(box)
        return out, f"annotation file {path}"

    def load_image(self, index: int) -> np.ndarray:
        """The stored image of item ``index`` as RGB uint8 (H, W, 3)."""
        return read_image(self.image_path(index))

    def __getitem__(self, index: int) -> dict:
        rel, label = self.samples[index]
        img = self.load_image(index)
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        try:
            face, context = preprocess(img, self.boxes[index], train=self.train, rng=rng,
                                       face_visible=self.face_visible, normalize=self.normalize)
        except ValueError as err:
            raise ValueError(f"{self.image_path(index)}: {err}") from None
        return {
            "face": torch.from_numpy(face),
            "context": torch.from_numpy(context),
            "label": label,
            "path": rel,
            "has_face": self.boxes[index] is not None,
        }
