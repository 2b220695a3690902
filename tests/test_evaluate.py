"""glamor-fast eval: metrics that agree with each other, the confusion-matrix PNG, clear errors."""
from __future__ import annotations

import json

import pytest
import torch

from glamor_fast.evaluate import classification_metrics, confusion_matrix, evaluate_checkpoint, format_confusion
from glamor_fast.training import CheckpointError
from tests.tiny_training import TINY_TEST, tiny_checkpoint


def test_confusion_matrix_counts():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(labels, preds, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    probs = torch.nn.functional.one_hot(preds, 3).float()
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": pytest.approx(2 / 3)}
    assert "true \\ pred" in format_confusion(cm.tolist(), ["a", "b", "c"])


def test_eval_writes_confusion_png_and_json(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path)
    out = tmp_path / "eval"
    m = evaluate_checkpoint(ckpt, out_dir=str(out), progress=False, backend="cpp")
    png = out / "confusion_matrix_test.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert m["n"] == TINY_TEST and sum(map(sum, m["confusion"])) == TINY_TEST
    diag = sum(m["confusion"][i][i] for i in range(7))
    assert m["accuracy"] == pytest.approx(diag / TINY_TEST)
    assert json.loads((out / "eval_test.json").read_text())["accuracy"] == m["accuracy"]
    printed = capsys.readouterr().out
    assert "confusion matrix" in printed and "per-class accuracy" in printed


def test_eval_of_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        evaluate_checkpoint(tmp_path / "nope.pt")


def test_eval_checks_the_predictions_path_before_evaluating(tmp_path, capsys, monkeypatch):
    import glamor_fast.evaluate as ev
    from glamor_fast.cli import main

    ckpt = tiny_checkpoint(tmp_path)
    evaluated = []
    monkeypatch.setattr(ev, "collect_predictions", lambda *a, **k: evaluated.append(1))
    a_folder = tmp_path / "a_folder"
    a_folder.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for flag, target in (("--predictions", a_folder), ("--predictions", a_file / "p.jsonl"),
                         ("--csv", a_folder), ("--csv", a_file / "p.csv")):
        assert main(["eval", str(ckpt), flag, str(target), "--no-progress", "--out-dir", str(tmp_path / "e")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("glamor-fast eval: error:") and flag in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not evaluated  # refused before the work
    assert sorted(p.name for p in a_folder.iterdir()) == []
    assert not list(tmp_path.rglob("*.tmp"))


def test_eval_prints_its_result_even_when_writing_the_predictions_fails(tmp_path, capsys, monkeypatch):
    import glamor_fast.evaluate as ev

    ckpt = tiny_checkpoint(tmp_path)
    out = tmp_path / "preds.jsonl"

    def disk_full(path, text):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(ev, "atomic_write_text", disk_full)
    with pytest.raises(OSError, match="No space"):
        evaluate_checkpoint(ckpt, out_dir=str(tmp_path / "e"), progress=False, backend="cpp", predictions=str(out))
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "confusion matrix" in printed
    assert not out.exists()


def test_eval_writes_predictions_as_json_lines_and_csv(tmp_path):
    import csv

    ckpt = tiny_checkpoint(tmp_path)
    jsonl, table = tmp_path / "out" / "p.jsonl", tmp_path / "out" / "p.csv"
    m = evaluate_checkpoint(ckpt, out_dir=str(tmp_path / "e"), progress=False, backend="cpp", verbose=False,
                            predictions=str(jsonl), csv=str(table))
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    rows = list(csv.DictReader(table.open()))
    assert len(records) == len(rows) == m["n"] == TINY_TEST
    classes = list(records[0]["probs"])
    assert list(rows[0]) == ["source", "label", "emotion", *[f"probs_{c}" for c in classes]]
    for rec, row in zip(records, rows):
        assert (row["source"], row["label"], row["emotion"]) == (rec["source"], rec["label"], rec["emotion"])
        assert [float(row[f"probs_{c}"]) for c in classes] == [rec["probs"][c] for c in classes]
    assert sum(r["emotion"] == r["label"] for r in records) / len(records) == pytest.approx(m["accuracy"])
    assert not list(tmp_path.rglob("*.tmp"))
