import argparse
import json
import shutil

import cv2
import numpy as np
import pytest

from glamor_fast.data import CAERSDataset, build_ncaer, read_image
from glamor_fast.cli import build_ncaer as ncaer_cli
from glamor_fast.data.ncaer import choose_frames

H, W = 48, 64


def _frame_value(i: int) -> int:
    return 4 + 5 * i  # frame i is a flat grey image of this value, so a written JPEG tells its frame


def write_video(path, num_frames: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for i in range(num_frames):
        writer.write(np.full((H, W, 3), _frame_value(i), np.uint8))
    writer.release()


VIDEOS = {  # CAER layout; the same file name in two splits is two different clips, as in CAER
    "train/Happy/0001.avi": 23, "train/Happy/0002.avi": 12, "train/Angry/0001.avi": 3,
    "validation/Sad/0001.avi": 17, "test/Happy/0001.avi": 30, "test/Fear/0007.avi": 9,
}


@pytest.fixture
def caer(tmp_path):
    root = tmp_path / "CAER"
    for rel, n in VIDEOS.items():
        write_video(root / rel, n)
    return root


def _fixed_box(img):
    return (1, 2, 30, 40)


def test_choose_frames_one_per_part():
    rng = np.random.default_rng(0)
    for n in (1, 3, 4, 5, 23, 100):
        idx = choose_frames(n, 4, rng)
        k = min(4, n)
        bounds = np.linspace(0, n, k + 1).astype(int)
        assert len(idx) == k
        assert all(lo <= i < hi for i, lo, hi in zip(idx, bounds[:-1], bounds[1:]))
    assert choose_frames(0, 4, rng) == []


def test_build_ncaer_k_frames_no_leak_and_loadable(caer, tmp_path):
    # a re-packed copy: the same clip bytes under another name in test must not reach test
    (caer / "test/Sad").mkdir()
    shutil.copy(caer / "train/Happy/0002.avi", caer / "test/Sad/0099.avi")
    out = tmp_path / "ncaer"
    m = build_ncaer(caer, out, parts=4, seed=0, detector=_fixed_box, progress=False)
    assert json.loads((out / "manifest.json").read_text()) == m
    assert m["removed"] == {"test/Sad/0099.avi": "same file content as train/Happy/0002.avi"}
    assert set(m["videos"]) == set(VIDEOS)
    # same name, different clip: kept by default, but listed
    assert m["same_name_as_earlier_split"] == {"test/Happy/0001.avi": "train/Happy/0001.avi"}
    for rel, n in VIDEOS.items():
        entry = m["videos"][rel]
        assert entry["split"] == {"train": "train", "validation": "val", "test": "test"}[rel.split("/")[0]]
        assert entry["num_frames"] == n and len(entry["frames"]) == min(4, n)
        bounds = np.linspace(0, n, min(4, n) + 1).astype(int)
        for f, lo, hi, img_rel in zip(entry["frames"], bounds[:-1], bounds[1:], entry["images"]):
            assert lo <= f < hi
            img = read_image(out / "images" / img_rel)
            assert img.shape == (H, W, 3) and abs(float(img.mean()) - _frame_value(f)) < 3  # the right frame
            assert (out / "images/crop" / img_rel).with_suffix(".txt").read_text().strip() == "1,2,30,40"
    # no video gives frames to two splits; image files per split come only from that split's videos
    splits_of = {}
    for rel, entry in m["videos"].items():
        splits_of.setdefault(rel, set()).add(entry["split"])
        assert all(p.startswith(entry["split"] + "/") for p in entry["images"])
    assert all(len(s) == 1 for s in splits_of.values())
    c = m["counts"]
    assert (c["train"]["videos"], c["train"]["images"]) == (3, 4 + 4 + 3)
    assert (c["val"]["images"], c["test"]["images"], c["test"]["removed"]) == (4, 8, 1)
    # "Angry" clips are written under the canonical "Anger" class folder
    assert c["train"]["per_class"]["Anger"] == 3 and (out / "images/train/Anger").is_dir()
    train = CAERSDataset(out / "images", "train")
    assert len(train) == 11 and train.boxes[0] == (1, 2, 30, 40) and train[0]["face"].shape == (3, 96, 96)
    assert len(CAERSDataset(out / "images", "val")) == 4 and len(CAERSDataset(out / "images", "test")) == 8


def test_build_ncaer_deterministic_with_seed(caer, tmp_path):
    frames = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        m = build_ncaer(caer, tmp_path / name, parts=4, seed=seed, detector=None, progress=False)
        frames[name] = {k: v["frames"] for k, v in m["videos"].items()}
    assert frames["a"] == frames["b"]
    assert frames["a"] != frames["c"]
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    assert a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.jpg"))
    assert not (tmp_path / "a/images/crop").exists()  # detector=None writes no boxes


def test_build_ncaer_refuses_to_mix_with_existing_output_and_skips_broken_video(caer, tmp_path, capsys):
    (caer / "test/Fear/0008.avi").write_bytes(b"not a video")
    out = tmp_path / "o"
    parser = argparse.ArgumentParser()
    ncaer_cli.add_arguments(parser)
    with pytest.warns(UserWarning, match="1 videos could not be decoded"):
        assert ncaer_cli.main(parser.parse_args([str(caer), str(out), "--parts", "2", "--no-detect", "--no-progress"])) == 0
    printed = capsys.readouterr().out
    assert "train" in printed and "manifest" in printed
    m = json.loads((out / "manifest.json").read_text())
    assert m["unreadable"] == ["test/Fear/0008.avi"] and m["parts"] == 2
    with pytest.raises(FileExistsError, match="overwrite"):
        build_ncaer(caer, out, parts=2, detector=None, progress=False)
    with pytest.warns(UserWarning):
        build_ncaer(caer, out, parts=3, detector=None, progress=False, overwrite=True)
    assert len(list((out / "images/train/Happy").glob("0001_*.jpg"))) == 3


def test_build_ncaer_dedupe_by_name(caer, tmp_path):
    m = build_ncaer(caer, tmp_path / "n", parts=2, detector=None, progress=False, by_name=True)
    assert m["removed"] == {"test/Happy/0001.avi": "same class and name as train/Happy/0001.avi"}
    assert "test/Happy/0001.avi" not in m["videos"] and "test/Fear/0007.avi" in m["videos"]
    assert not (tmp_path / "n/images/test/Happy").exists()
