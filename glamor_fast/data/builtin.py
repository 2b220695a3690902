"""The built-in dataset: procedurally generated, seeded context-emotion images in the CAER-S layout.

Purpose: a default dataset for the quick start that trains GLAMOR-Net on a CPU in minutes and
on which face-guided context attention is useful, written exactly as CAER-S is stored
(``root/{train,test}/<Emotion>/*.png`` and ``root/crop/<split>/<Emotion>/<stem>.txt`` face boxes)
so that the real loader code (CAERSDataset, transforms) is what the quick start runs.

Design (one image, default 128x171 = the loader's resize size, so that resize is a no-op):

- The face: a cartoon face (skin disc, two eyes) on the left or right side of the image, with a
  thick ring (hair) in a *cue colour*, one of PALETTE. The face box is a square around face and
  ring, so the ring is inside the face crop and is blacked out of the masked context.
- Its expression: with probability ``p_clear`` (default 0.5) the mouth and brows show the label's
  emotion (smile, frown, open mouth, ...); otherwise the mouth is hidden under a grey face mask
  and there are no brows, so the face alone says nothing about the emotion.
- The context: NUM_SYMBOLS (3) coloured symbols stacked in a column (random order, random
  horizontal jitter), each a shape that stands for an emotion (SYMBOL_SHAPES: Anger triangle up,
  Disgust X, Fear diamond, Happy disc, Neutral square, Sad triangle down, Surprise ring) and each
  in a different colour of PALETTE (4 colours). Exactly one symbol has the face's cue colour,
  and *its* shape is the label; the other two show random emotions. Background: a random
  grey-ish gradient, a few grey clutter strokes, pixel noise.
- So: the label is decided by the context region that the face points at. A face-only model
  can reach about p_clear + (1 - p_clear) / 7 (57% by default); a context-only model with the
  face masked must guess which of the 3 symbols counts (the cue colour is masked out), about
  1/3 + (2/3)(1/7) = 43% by guessing a symbol; a model that uses the face to pick the context
  region can be right every time. (Mean pooling can in principle solve it too, with channels
  that fire on one colour-and-shape pair; picking the region by the face's colour is what
  face-guided attention does directly.)
- Robust to the loader: the symbol grid lies inside the band that every 112x112 crop of the
  128x171 resize contains (x in [59, 112), y in [16, 112) at 171x128, i.e. the same fractions
  at other sizes), so random training crops never cut the deciding symbol; the cue is colour,
  which survives the face's flip and +-20 degree rotation; symbols are ~26 px, larger than the
  conv5 encoder's 16-px feature cells at 112x112. (Version 1 had 4 smaller symbols in a 3x2
  grid and 5 colours; version 2 has fewer, larger symbols and fewer colours, to be learned in
  fewer epochs.)

Files: ``root/builtin.json`` (the parameters; a second call with the same parameters returns at
once), ``root/meta_<split>.json`` (per image: label, cue colour, clear or masked face, face box,
symbols with colour, emotion and centre), so the label rule can be checked.
Generation takes about 4-8 ms an image (6-13 s measured for the default 1200 + 400 on the shared 2-core machine).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from .caer import CROP_DIR, EMOTIONS, box_file_for, write_box_file

VERSION = 2
DEFAULT_IMAGE_SIZE = (128, 171)  # (H, W), the loader's context resize size
PALETTE = {  # RGB, saturated and far from skin and background greys
    "red": (230, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 80, 245),
    "yellow": (245, 215, 20),
}
SYMBOL_SHAPES = ("triangle_up", "cross", "diamond", "disc", "square", "triangle_down", "ring")  # by label
NUM_SYMBOLS = 3
GRID_ROWS, GRID_COLS = 3, 1
# The part of the image that every 112x112 crop of its 128x171 resize contains.
SAFE_X = (59 / 171, 112 / 171)
SAFE_Y = (16 / 128, 112 / 128)
SKIN = ((242, 205, 170), (215, 165, 120), (170, 120, 85), (120, 85, 60))
STAMP = "builtin.json"


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


def draw_symbol(img: np.ndarray, emotion: int, cx: float, cy: float, s: float, color) -> None:
    """Draw the shape of ``emotion`` (an EMOTIONS index) with half-size ``s`` centred at (cx, cy)."""
    shape = SYMBOL_SHAPES[emotion]
    outline = (20, 20, 20)
    if shape in ("triangle_up", "triangle_down", "diamond", "square"):
        if shape == "triangle_up":
            pts = [(cx, cy - s), (cx + s, cy + s * 0.8), (cx - s, cy + s * 0.8)]
        elif shape == "triangle_down":
            pts = [(cx, cy + s), (cx + s, cy - s * 0.8), (cx - s, cy - s * 0.8)]
        elif shape == "diamond":
            pts = [(cx, cy - s), (cx + s, cy), (cx, cy + s), (cx - s, cy)]
        else:
            k = s * 0.85
            pts = [(cx - k, cy - k), (cx + k, cy - k), (cx + k, cy + k), (cx - k, cy + k)]
        poly = np.array([_pt(*p) for p in pts], dtype=np.int32)
        cv2.fillPoly(img, [poly], color, cv2.LINE_AA)
        cv2.polylines(img, [poly], True, outline, 1, cv2.LINE_AA)
    elif shape == "disc":
        cv2.circle(img, _pt(cx, cy), int(round(s)), color, -1, cv2.LINE_AA)
        cv2.circle(img, _pt(cx, cy), int(round(s)), outline, 1, cv2.LINE_AA)
    elif shape == "ring":
        cv2.circle(img, _pt(cx, cy), int(round(s * 0.75)), color, max(2, int(round(s * 0.45))), cv2.LINE_AA)
    elif shape == "cross":
        t = max(2, int(round(s * 0.45)))
        k = s * 0.8
        cv2.line(img, _pt(cx - k, cy - k), _pt(cx + k, cy + k), color, t, cv2.LINE_AA)
        cv2.line(img, _pt(cx - k, cy + k), _pt(cx + k, cy - k), color, t, cv2.LINE_AA)


def draw_face(img: np.ndarray, cx: float, cy: float, r: float, cue_color, skin, emotion: Optional[int],
              rng: np.random.Generator) -> None:
    """A cartoon face of radius r with a cue-coloured ring; ``emotion`` None draws a masked, neutral-less face."""
    cv2.circle(img, _pt(cx, cy), int(round(r * 1.3)), cue_color, -1, cv2.LINE_AA)
    cv2.circle(img, _pt(cx, cy), int(round(r)), skin, -1, cv2.LINE_AA)
    dark = (25, 20, 20)
    eye_dx, eye_y = 0.38 * r, cy - 0.2 * r
    for sx in (-1, 1):
        cv2.circle(img, _pt(cx + sx * eye_dx, eye_y), max(1, int(round(0.13 * r))), dark, -1, cv2.LINE_AA)
    t = max(2, int(round(0.12 * r)))
    mouth_y = cy + 0.45 * r
    if emotion is None:  # a face mask over mouth and nose: the expression is hidden
        mask_color = tuple(int(v) for v in rng.integers(185, 235, size=1).repeat(3))
        cv2.rectangle(img, _pt(cx - 0.62 * r, cy + 0.02 * r), _pt(cx + 0.62 * r, cy + 0.75 * r), mask_color, -1, cv2.LINE_AA)
        return

    def brows(inner_dy: float, outer_dy: float, lift: float = 0.0):
        by = eye_y - 0.32 * r - lift
        for sx in (-1, 1):
            cv2.line(img, _pt(cx + sx * 0.15 * r, by + inner_dy), _pt(cx + sx * 0.6 * r, by + outer_dy), dark, t, cv2.LINE_AA)

    axes = _pt(0.38 * r, 0.22 * r)
    name = EMOTIONS[emotion]
    if name == "Anger":
        brows(0.14 * r, -0.12 * r)
        cv2.line(img, _pt(cx - 0.3 * r, mouth_y + 0.05 * r), _pt(cx + 0.3 * r, mouth_y + 0.05 * r), dark, t, cv2.LINE_AA)
    elif name == "Disgust":
        by = eye_y - 0.32 * r
        cv2.line(img, _pt(cx - 0.6 * r, by - 0.1 * r), _pt(cx - 0.15 * r, by - 0.1 * r), dark, t, cv2.LINE_AA)
        cv2.line(img, _pt(cx + 0.15 * r, by + 0.08 * r), _pt(cx + 0.6 * r, by + 0.08 * r), dark, t, cv2.LINE_AA)
        pts = np.array([_pt(cx - 0.35 * r, mouth_y + 0.1 * r), _pt(cx - 0.1 * r, mouth_y - 0.05 * r),
                        _pt(cx + 0.1 * r, mouth_y + 0.12 * r), _pt(cx + 0.35 * r, mouth_y - 0.12 * r)], np.int32)
        cv2.polylines(img, [pts], False, dark, t, cv2.LINE_AA)
    elif name == "Fear":
        brows(-0.12 * r, 0.1 * r, lift=0.05 * r)
        cv2.ellipse(img, _pt(cx, mouth_y), _pt(0.3 * r, 0.12 * r), 0, 0, 360, dark, -1, cv2.LINE_AA)
    elif name == "Happy":
        cv2.ellipse(img, _pt(cx, mouth_y - 0.12 * r), axes, 0, 10, 170, dark, t + 1, cv2.LINE_AA)
    elif name == "Neutral":
        brows(0.0, 0.0)
        cv2.line(img, _pt(cx - 0.3 * r, mouth_y), _pt(cx + 0.3 * r, mouth_y), dark, t, cv2.LINE_AA)
    elif name == "Sad":
        brows(-0.1 * r, 0.12 * r)
        cv2.ellipse(img, _pt(cx, mouth_y + 0.2 * r), axes, 0, 190, 350, dark, t + 1, cv2.LINE_AA)
    elif name == "Surprise":
        brows(0.0, 0.0, lift=0.15 * r)
        cv2.ellipse(img, _pt(cx, mouth_y), _pt(0.17 * r, 0.25 * r), 0, 0, 360, dark, -1, cv2.LINE_AA)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(90, 190) + rng.uniform(-15, 15, size=3)  # grey-ish, slightly tinted
    ramp = np.linspace(-1, 1, h)[:, None, None] * rng.uniform(-25, 25)
    img = np.broadcast_to(base[None, None, :] + ramp, (h, w, 3)).copy()
    img += rng.normal(0, 5, size=img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 5))):  # grey clutter strokes, anywhere
        g = int(rng.integers(40, 230))
        p1 = _pt(rng.uniform(0, w), rng.uniform(0, h))
        p2 = _pt(rng.uniform(0, w), rng.uniform(0, h))
        cv2.line(img, p1, p2, (g, g, g), int(rng.integers(1, 3)), cv2.LINE_AA)
    return img


def render_sample(label: int, rng: np.random.Generator, image_size=DEFAULT_IMAGE_SIZE,
                  p_clear: float = 0.5) -> tuple[np.ndarray, tuple[int, int, int, int], dict]:
    """One image -> (RGB uint8 (H, W, 3), face box (x1, y1, x2, y2), metadata dict)."""
    h, w = image_size
    img = _background(h, w, rng)
    colors = list(PALETTE)
    sym_colors = [colors[i] for i in rng.permutation(len(colors))[:NUM_SYMBOLS]]
    target = int(rng.integers(NUM_SYMBOLS))
    emotions = [int(e) for e in rng.integers(len(EMOTIONS), size=NUM_SYMBOLS)]
    emotions[target] = int(label)
    # Symbol grid inside the crop-safe band.
    x0, x1 = SAFE_X[0] * w, SAFE_X[1] * w
    y0, y1 = SAFE_Y[0] * h, SAFE_Y[1] * h
    cw, ch = (x1 - x0) / GRID_COLS, (y1 - y0) / GRID_ROWS
    s = 0.4 * min(cw, ch)
    slots = rng.permutation(GRID_ROWS * GRID_COLS)[:NUM_SYMBOLS]
    symbols = []
    for k, slot in enumerate(slots):
        row, col = divmod(int(slot), GRID_COLS)
        jx, jy = max(0.0, cw / 2 - s - 1), max(0.0, ch / 2 - s - 1)
        cx = x0 + (col + 0.5) * cw + rng.uniform(-jx, jx)
        cy = y0 + (row + 0.5) * ch + rng.uniform(-jy, jy)
        draw_symbol(img, emotions[k], cx, cy, s, PALETTE[sym_colors[k]])
        symbols.append({"color": sym_colors[k], "emotion": EMOTIONS[emotions[k]],
                        "center": [round(cx, 2), round(cy, 2)], "half_size": round(s, 2)})
    # The face, left or right of the band, never overlapping it.
    r = 0.13 * h
    half = 1.35 * r
    side = int(rng.integers(2))
    fx_hi = x0 - half - 1
    fx = rng.uniform(min(fx_hi, max(half, x0 - 0.17 * w)), fx_hi)
    fx = fx if side == 0 else w - fx
    fy = rng.uniform(max(half, 0.3 * h), min(h - half, 0.7 * h))
    clear = bool(rng.random() < p_clear)
    skin = SKIN[int(rng.integers(len(SKIN)))]
    draw_face(img, fx, fy, r, PALETTE[sym_colors[target]], skin, int(label) if clear else None, rng)
    box = (int(math.floor(fx - half)), int(math.floor(fy - half)), int(math.ceil(fx + half)), int(math.ceil(fy + half)))
    box = (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))
    meta = {"label": EMOTIONS[int(label)], "cue_color": sym_colors[target], "clear_face": clear, "box": list(box),
            "face_center": [round(fx, 2), round(fy, 2)], "face_radius": round(r, 2), "symbols": symbols}
    return img, box, meta


def _params(num_train: int, num_test: int, num_val: int, seed: int, image_size, p_clear: float) -> dict:
    return {"version": VERSION, "num_train": int(num_train), "num_test": int(num_test), "num_val": int(num_val),
            "seed": int(seed), "image_size": [int(image_size[0]), int(image_size[1])], "p_clear": float(p_clear)}


def generate_builtin(root: Union[str, os.PathLike], num_train: int = 1200, num_test: int = 400, seed: int = 0,
                     image_size=DEFAULT_IMAGE_SIZE, num_val: int = 0, p_clear: float = 0.5) -> Path:
    """Write the built-in dataset under ``root`` (splits train, test, and val if num_val > 0); returns root.

    Labels are balanced (each class n // 7 or n // 7 + 1 times per split). Idempotent: if
    root/builtin.json holds the same parameters, nothing is done. A root made by an earlier call
    with other parameters is regenerated; a non-empty root without builtin.json is refused.
    """
    root = Path(root)
    h, w = (int(v) for v in image_size)
    if h < 64 or w < 64:
        raise ValueError(f"image_size must be at least (64, 64), got {tuple(image_size)}")
    if min(num_train, num_test) < 1 or num_val < 0:
        raise ValueError(f"need num_train >= 1, num_test >= 1, num_val >= 0; got {num_train}, {num_test}, {num_val}")
    if not 0.0 <= p_clear <= 1.0:
        raise ValueError(f"p_clear must be in [0, 1], got {p_clear}")
    params = _params(num_train, num_test, num_val, seed, (h, w), p_clear)
    stamp = root / STAMP
    if stamp.is_file():
        old = json.loads(stamp.read_text())
        if old.pop("complete", False) and old == params:
            return root
        for name in ("train", "val", "test", CROP_DIR):  # ours: made by an earlier (maybe interrupted) call
            shutil.rmtree(root / name, ignore_errors=True)
        for meta in root.glob("meta_*.json"):
            meta.unlink()
    elif root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty and holds no {STAMP}; pick an empty folder for the built-in dataset")
    root.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({**params, "complete": False}, indent=1))
    splits = {"train": num_train, "test": num_test}
    if num_val:
        splits["val"] = num_val
    for split, n in splits.items():
        split_seed = [int(seed), zlib.crc32(split.encode())]
        labels = np.random.default_rng(split_seed).permutation(np.arange(n) % len(EMOTIONS))
        metas = {}
        for i, label in enumerate(labels):
            img, box, meta = render_sample(int(label), np.random.default_rng(split_seed + [i]), (h, w), p_clear)
            rel = f"{split}/{EMOTIONS[int(label)]}/{i:05d}.png"
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError(f"could not encode {path}")
            buf.tofile(str(path))
            write_box_file(box_file_for(root, rel), box)
            metas[rel] = meta
        (root / f"meta_{split}.json").write_text(json.dumps(metas))
    stamp.write_text(json.dumps({**params, "complete": True}, indent=1))
    return root
