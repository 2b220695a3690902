"""prepare -> train --cache -> eval --cache --predictions, against the on-the-fly pipeline."""
import json

import pytest

from glamor_fast.cli import main
from tests.data.conftest import frames_tree  # noqa: F401  (fixture)

TINY = ["--dataset", "caer-s", "--epochs", "1", "--batch-size", "8", "--gla-hidden", "16", "--backend", "reference",
        "--threads", "2", "--no-progress", "--val-fraction", "0", "--num-workers", "0"]


def _predictions(path):
    return {r["source"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_cached_train_and_eval_match_on_the_fly(frames_tree, tmp_path, capsys):  # noqa: F811
    cache = tmp_path / "cache"
    assert main(["prepare", str(frames_tree), "--out", str(cache), "--workers", "1", "--no-progress"]) == 0
    assert main(["train", "--cache", str(cache), "--out-dir", str(tmp_path / "run"), *TINY]) == 0
    ckpt = tmp_path / "run" / "best.pt"
    common = [str(ckpt), "--no-progress", "--backend", "reference", "--num-workers", "0"]
    assert main(["eval", *common, "--cache", str(cache), "--predictions", str(tmp_path / "cached.jsonl"),
                 "--out-dir", str(tmp_path / "e1")]) == 0
    assert main(["eval", *common, "--data-root", str(frames_tree), "--predictions", str(tmp_path / "fly.jsonl"),
                 "--out-dir", str(tmp_path / "e2")]) == 0
    cached, fly = _predictions(tmp_path / "cached.jsonl"), _predictions(tmp_path / "fly.jsonl")
    assert len(cached) == 7 and cached.keys() == fly.keys()
    for src, row in cached.items():
        assert set(row) == {"source", "label", "emotion", "probs"} and len(row["probs"]) == 7
        assert row["label"] == fly[src]["label"] and row["emotion"] == fly[src]["emotion"]
        for name, p in row["probs"].items():
            assert abs(p - fly[src]["probs"][name]) <= 1e-6
        assert src.startswith(str(frames_tree.resolve()))


def test_stale_cache_is_refused_with_how_to_rebuild(frames_tree, tmp_path, capsys):  # noqa: F811
    cache = tmp_path / "cache"
    assert main(["prepare", str(frames_tree), "--out", str(cache), "--workers", "1", "--no-progress"]) == 0
    (frames_tree / "crop/train/Sad/0000.txt").write_text("1,2,100,120\n")
    capsys.readouterr()
    assert main(["train", "--cache", str(cache), "--out-dir", str(tmp_path / "run"), *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is stale" in err[0] and "face box changed" in err[0]
    assert f"glamor-fast prepare {frames_tree.resolve()} --out {cache} --splits train" in err[0]
    assert main(["prepare", str(frames_tree), "--out", str(cache), "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train: 14 entries (1 decoded, 13 copied" in out and "test: 7 entries, up to date" in out


def test_prepare_interrupt_says_what_is_kept_and_exits_130(tmp_path, capsys, monkeypatch):
    import glamor_fast.cli.prepare as prepare_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_cli, "prepare_cache", interrupted)
    assert main(["prepare", str(tmp_path), "--no-progress"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "resume" in err[0]
