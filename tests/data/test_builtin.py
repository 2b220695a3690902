import json
import time
import warnings
from collections import Counter

import numpy as np
import pytest

from glamor_fast.data import EMOTIONS, CAERSDataset, generate_builtin, read_image
from glamor_fast.data.builtin import PALETTE, SAFE_X, SAFE_Y, render_sample

NAMES = list(PALETTE)
RGB = np.array([PALETTE[n] for n in NAMES], dtype=np.float64)


def _colour_name(pixel) -> str:
    return NAMES[int(np.argmin(((RGB - np.asarray(pixel, np.float64)) ** 2).sum(1)))]


def _dist_to_palette(pixel) -> float:
    return float(np.sqrt(((RGB - np.asarray(pixel, np.float64)) ** 2).sum(1)).min())


def _probe(img, x, y):
    return img[int(round(y)), int(round(x))]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("builtin") / "data"
    t = time.perf_counter()
    generate_builtin(root, num_train=28, num_test=14, seed=0)
    return root, time.perf_counter() - t


def test_generates_fast_and_loads_through_caers_loader(small):
    root, seconds = small
    assert seconds < 10  # ~5 ms an image
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every image has a face box
        train = CAERSDataset(root, "train", train=True)
        test = CAERSDataset(root, "test")
    assert len(train) == 28 and len(test) == 14
    assert Counter(train.targets) == {i: 4 for i in range(7)} and Counter(test.targets) == {i: 2 for i in range(7)}
    item = train[5]
    assert item["face"].shape == (3, 96, 96) and item["context"].shape == (3, 112, 112) and item["has_face"]
    assert read_image(root / train.samples[0][0]).shape == (128, 171, 3)


def test_label_rule_holds_in_the_pixels(small):
    """The face ring's colour picks one symbol; that symbol's shape is the label."""
    root, _ = small
    for split in ("train", "test"):
        meta = json.loads((root / f"meta_{split}.json").read_text())
        ds = CAERSDataset(root, split)
        assert set(meta) == {rel for rel, _ in ds.samples}
        for (rel, label), box in zip(ds.samples, ds.boxes):
            m = meta[rel]
            img = read_image(root / rel)
            h, w = img.shape[:2]
            assert m["label"] == EMOTIONS[label] and list(box) == m["box"]
            fx, fy = m["face_center"]
            r = m["face_radius"]
            ring = _probe(img, fx, fy - 1.15 * r)
            assert _dist_to_palette(ring) < 40 and _colour_name(ring) == m["cue_color"], rel
            # the whole ring lies inside the face box, so masking the face removes the cue
            assert box[0] <= fx - 1.3 * r and fx + 1.3 * r <= box[2] and box[1] <= fy - 1.3 * r and fy + 1.3 * r <= box[3]
            cued = []
            for s in m["symbols"]:
                cx, cy = s["center"]
                half = s["half_size"]
                px = _probe(img, cx + 0.75 * half, cy) if s["emotion"] == "Surprise" else _probe(img, cx, cy)  # ring
                assert _dist_to_palette(px) < 40 and _colour_name(px) == s["color"], (rel, s)
                # inside the band that every 112x112 crop of the 128x171 resize keeps
                assert SAFE_X[0] * w <= cx - half and cx + half <= SAFE_X[1] * w
                assert SAFE_Y[0] * h <= cy - half and cy + half <= SAFE_Y[1] * h
                # and not under the face box
                assert cx + half < box[0] or cx - half > box[2]
                if s["color"] == m["cue_color"]:
                    cued.append(s["emotion"])
            assert cued == [EMOTIONS[label]], rel


def test_face_is_clear_for_about_p_clear_of_samples():
    clear = [render_sample(i % 7, np.random.default_rng([9, i]))[2]["clear_face"] for i in range(280)]
    assert 0.4 < np.mean(clear) < 0.6
    assert all(render_sample(0, np.random.default_rng(i), p_clear=1.0)[2]["clear_face"] for i in range(5))
    # a masked face and a clear face differ only in the face region
    a, box, _ = render_sample(3, np.random.default_rng(1), p_clear=1.0)
    b, box_b, _ = render_sample(3, np.random.default_rng(1), p_clear=0.0)
    assert box == box_b
    diff = np.argwhere((a != b).any(2))
    assert len(diff) > 0
    assert diff[:, 1].min() >= box[0] and diff[:, 1].max() < box[2] and diff[:, 0].min() >= box[1] and diff[:, 0].max() < box[3]


def test_deterministic_for_a_seed_and_idempotent(small, tmp_path):
    root, _ = small
    again = generate_builtin(tmp_path / "again", num_train=28, num_test=14, seed=0)
    other = generate_builtin(tmp_path / "other", num_train=28, num_test=14, seed=1)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((root / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert any((root / f).read_bytes() != (other / f).read_bytes()
               for f in files if (other / f).is_file() and f.suffix == ".png")
    # same parameters: nothing is rewritten
    stamp_mtime = (again / "builtin.json").stat().st_mtime_ns
    png = next(again.rglob("*.png"))
    png_mtime = png.stat().st_mtime_ns
    generate_builtin(again, num_train=28, num_test=14, seed=0)
    assert (again / "builtin.json").stat().st_mtime_ns == stamp_mtime and png.stat().st_mtime_ns == png_mtime
    # other parameters: regenerated, old files gone
    generate_builtin(again, num_train=14, num_test=7, seed=0, num_val=7)
    assert len(CAERSDataset(again, "train")) == 14 and len(CAERSDataset(again, "val")) == 7
    assert json.loads((again / "builtin.json").read_text())["complete"] is True
    # a folder that is not ours is refused
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_builtin(tmp_path / "foreign", num_train=7, num_test=7)
