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
