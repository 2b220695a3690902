import warnings

import numpy as np
import pytest
import torch

from glamor_fast.data import EMOTIONS, CAERSDataset, CorruptImageError
from glamor_fast.data.caer import box_file_for, write_box_file

from .conftest import write_image


def _no_warnings(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


def _write_box_files(root, rels, box=(5, 4, 25, 30)):
    for rel in rels:
        write_box_file(box_file_for(root, rel), box)


def test_scan_labels_and_angry_anger_split(tree):
    root, files = tree
    _write_box_files(root, files)
    train = _no_warnings(lambda: CAERSDataset(root, "train"))
    test = _no_warnings(lambda: CAERSDataset(root, "test"))
    assert train.classes == EMOTIONS == ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
    assert dict(train.samples) == {k: v for k, v in files.items() if k.startswith("train/")}
    assert dict(test.samples) == {k: v for k, v in files.items() if k.startswith("test/")}
    # "Angry" in train and "Anger" in test are one label
    assert train.samples[0] == ("train/Angry/a0.png", 0) and test.samples[0] == ("test/Anger/a0.png", 0)


def test_item_from_per_image_box_files(tree):
    root, files = tree
    _write_box_files(root, files, box=(5, 4, 25, 30))
    ds = CAERSDataset(root, "train")
    assert ds.box_source.startswith("per-image box files")
    item = ds[0]
    assert set(item) >= {"face", "context", "label", "path"}
    assert item["face"].shape == (3, 96, 96) and item["face"].dtype == torch.float32
    assert item["context"].shape == (3, 112, 112) and item["context"].dtype == torch.float32
    assert item["label"] == 0 and item["path"] == "train/Angry/a0.png" and item["has_face"]
    assert 0 <= item["face"].min() and item["face"].max() <= 1 and item["face"].abs().sum() > 0
    # face = the box region, resized (compare with a direct OpenCV crop of the stored image)
    import cv2
    img = cv2.cvtColor(cv2.imread(str(root / "train/Angry/a0.png")), cv2.COLOR_BGR2RGB)
    expected = cv2.resize(img[4:30, 5:25], (96, 96), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(item["face"].numpy(), expected.transpose(2, 0, 1) / 255.0, atol=1e-6)
    # box "x1 y1 x2 y2" with spaces and an empty file (no face) are both accepted
    box_file_for(root, "train/Angry/a1.png").write_text("5 4 25 30\n")
    box_file_for(root, "train/happy/h0.png").write_text("")
    with pytest.warns(UserWarning, match="1 of 4 images have no face box"):
        ds = CAERSDataset(root, "train")
    assert ds.boxes[:3] == [(5, 4, 25, 30), (5, 4, 25, 30), None]


def test_annotation_file_auto_and_explicit(tree, tmp_path):
    root, files = tree
    lines = ["relpath,label,x1,y1,x2,y2", "# a comment", ""]
    for i, (rel, label) in enumerate(files.items()):
        lab = str(label) if i % 2 else EMOTIONS[label].lower()  # index or class name
        lines.append(f"{rel},{lab},{i},{i + 1},{i + 20},{i + 21}")
    (root / "annotations_train.txt").write_text("\n".join(lines) + "\n")
    ds = _no_warnings(lambda: CAERSDataset(root, "train"))
    assert ds.box_source.startswith("annotation file")
    assert ds.boxes == [(0, 1, 20, 21), (1, 2, 21, 22), (2, 3, 22, 23), (3, 4, 23, 24)]
    explicit = tmp_path / "elsewhere.csv"
    explicit.write_text("\n".join(lines) + "\n")
    ds2 = _no_warnings(lambda: CAERSDataset(root, "test", boxes=explicit))
    assert ds2.boxes == [(4, 5, 24, 25), (5, 6, 25, 26)]
    assert ds2[1]["label"] == 6 and ds2[1]["has_face"]


def test_boxes_dict_is_pluggable(tree):
    root, _ = tree
    boxes = {"test/Anger/a0.png": (1, 2, 30, 33), "test/Surprise/u0.png": None}
    with pytest.warns(UserWarning, match="1 of 2 images have no face box"):
        ds = CAERSDataset(root, "test", boxes=boxes)
    assert ds.boxes == [(1, 2, 30, 33), None]


def test_missing_box_gives_zero_face_unmasked_context_and_one_warning(tree):
    root, files = tree
    _write_box_files(root, [r for r in files if r != "train/Sad/s0.jpg"], box=(0, 0, 60, 40))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CAERSDataset(root, "train")
        items = [ds[i] for i in range(len(ds))]
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "1 of 4 images have no face box" in msgs[0] and "train/Sad/s0.jpg" in msgs[0]
    missing = items[3]
    assert missing["path"] == "train/Sad/s0.jpg" and not missing["has_face"]
    assert (missing["face"] == 0).all()
    assert (missing["context"] > 0).float().mean() > 0.9  # unmasked (random image, few zero pixels)
    assert (items[0]["context"] == 0).all()  # box = whole image -> fully masked
    with pytest.warns(UserWarning, match="4 of 4 images"):
        CAERSDataset(root, "train", boxes={})


def test_corrupt_image_error_names_file(tree):
    root, files = tree
    _write_box_files(root, files)
    (root / "train/happy/h0.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    ds = CAERSDataset(root, "train")
    with pytest.raises(CorruptImageError, match=r"h0\.png"):
        ds[2]
    (root / "train/happy/h0.png").write_bytes(b"")
    with pytest.raises(CorruptImageError, match=r"h0\.png"):
        ds[2]


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd", "train/../../x.png", "..\\x.png"])
def test_annotation_path_escaping_root_is_refused(tree, bad):
    root, _ = tree
    ann = root / "annotations_train.txt"
    ann.write_text(f"train/Angry/a0.png,0,1,1,5,5\n{bad},0,1,1,5,5\n")
    with pytest.raises(ValueError, match=r"annotations_train\.txt:2.*outside the dataset root"):
        CAERSDataset(root, "train")


def test_bad_annotations_and_layout_errors(tree):
    root, _ = tree
    ann = root / "annotations_train.txt"
    ann.write_text("train/Angry/a0.png,Happy,1,1,5,5\n")
    with pytest.raises(ValueError, match="labelled Happy but lies in a folder of class Anger"):
        CAERSDataset(root, "train")
    ann.write_text("train/Angry/a0.png,0,1,1,5\n")
    with pytest.raises(ValueError, match=r"annotations_train\.txt:1"):
        CAERSDataset(root, "train")
    ann.write_text("train/Angry/a0.png,0,9,1,5,5\n")
    with pytest.raises(ValueError, match=r"annotations_train\.txt:1: empty or negative face box"):
        CAERSDataset(root, "train")
    ann.write_text("train/Angry/a0.png,0,1,1,5,5\ntrain/Angry/a0.png,0,1,1,5,5\n")
    with pytest.raises(ValueError, match="appears twice"):
        CAERSDataset(root, "train")
    with pytest.raises(FileNotFoundError, match="split folder"):
        CAERSDataset(root, "validation")
    write_image(root / "test/Contempt/c.png")
    with pytest.raises(ValueError, match="Contempt"):
        CAERSDataset(root, "test")


def test_training_items_deterministic_per_seed_and_epoch(tree):
    root, files = tree
    _write_box_files(root, files)
    a = CAERSDataset(root, "train", train=True, seed=1)
    b = CAERSDataset(root, "train", train=True, seed=1)
    assert torch.equal(a[0]["context"], b[0]["context"]) and torch.equal(a[0]["face"], b[0]["face"])
    faces = {a[0]["face"].numpy().tobytes()}
    for epoch in range(1, 6):
        a.set_epoch(epoch)
        faces.add(a[0]["face"].numpy().tobytes())
    assert len(faces) > 1  # set_epoch gives fresh augmentation
    c = CAERSDataset(root, "train", train=True, seed=2)
    assert any(not torch.equal(c[i]["face"], b[i]["face"]) for i in range(len(c)))
    # evaluation items do not depend on seed or epoch
    e1, e2 = CAERSDataset(root, "train", seed=1), CAERSDataset(root, "train", seed=2)
    e2.set_epoch(3)
    assert all(torch.equal(e1[i]["context"], e2[i]["context"]) and torch.equal(e1[i]["face"], e2[i]["face"])
               for i in range(len(e1)))


def test_malformed_box_file_names_the_file(tree):
    root, files = tree
    _write_box_files(root, files)
    box_file_for(root, "train/Sad/s0.jpg").write_text("12,oops,3\n")
    with pytest.raises(ValueError, match=r"crop/train/Sad/s0\.txt"):
        CAERSDataset(root, "train")
    box_file_for(root, "train/Sad/s0.jpg").write_text("500,500,600,600\n")  # outside the 60x40 image
    ds = CAERSDataset(root, "train")
    with pytest.raises(ValueError, match=r"s0\.jpg.*outside"):
        ds[3]
