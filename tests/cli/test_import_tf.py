"""glamor-fast import-tf: the authors' TF checkpoint -> a project checkpoint that eval, predict,
visualize and train --resume accept."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import cbook

from glamor_fast.cli import main as cli_main
from glamor_fast.training import load_checkpoint, model_from_checkpoint
from tests.test_tf_checkpoint import FIXTURE, PREFIX, copy_fixture
from tests.tiny_training import tiny_dataset

GRACE = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("import_tf")
    out = root / "authors.pt"
    assert cli_main(["import-tf", str(PREFIX), str(out)]) == 0
    return root, out


def test_the_imported_checkpoint_is_the_tf_model(imported):
    _, out = imported
    ckpt = load_checkpoint(out)
    assert ckpt["config"]["model"] == "glamor-net-authors" and ckpt["epoch"] == 0 and len(ckpt["class_names"]) == 7
    model = model_from_checkpoint(ckpt, backend="reference")
    d = np.load(FIXTURE / "expected.npz")
    face = torch.from_numpy(d["face_nhwc"]).permute(0, 3, 1, 2)
    context = torch.from_numpy(d["context_nhwc"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        probs = torch.softmax(model(face, context), 1).numpy()
    np.testing.assert_allclose(probs, d["probs"], atol=1e-5, rtol=0)


def test_eval_predict_and_resume_accept_it(imported, capsys):
    root, out = imported
    data = tiny_dataset(root / "builtin")
    assert cli_main(["eval", str(out), "--data-root", str(data), "--backend", "reference", "--no-progress",
                     "--out-dir", str(root / "eval")]) == 0
    assert "glamor-net-authors on test (14 images)" in capsys.readouterr().out
    assert cli_main(["predict", GRACE, "--checkpoint", str(out), "--out", str(root / "predicted"),
                     "--backend", "reference", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert records and records[0]["box"] is not None  # the Haar cascade finds Grace Hopper's face
    probs = records[0]["probs"]
    assert len(probs) == 7 and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert cli_main(["visualize", str(out), "--data-root", str(data), "--num", "2", "--backend", "reference",
                     "--out-dir", str(root / "figures")]) == 0
    assert (root / "figures" / "attention_maps.png").is_file()
    assert cli_main(["train", "--model", "glamor-net-authors", "--resume", str(out), "--data-root", str(data),
                     "--epochs", "1", "--batch-size", "8", "--max-batches-per-epoch", "1", "--backend", "reference",
                     "--threads", "2", "--no-progress", "--out-dir", str(root / "finetune")]) == 0
    assert "resumed from" in capsys.readouterr().out and (root / "finetune" / "last.pt").is_file()


def test_errors_are_one_line_and_nothing_is_overwritten(imported, tmp_path, capsys):
    _, out = imported
    before = out.read_bytes()
    assert cli_main(["import-tf", str(PREFIX), str(out)]) == 1
    assert out.read_bytes() == before
    assert "exists" in capsys.readouterr().err
    prefix = copy_fixture(tmp_path)
    Path(f"{prefix}.data-00002-of-00003").unlink()
    target = tmp_path / "x.pt"
    assert cli_main(["import-tf", str(prefix), str(target)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "import-tf: error: TF checkpoint shard" in err and "is missing" in err
    assert not target.exists() and not list(tmp_path.glob(".x.pt.*"))   # no half-written file
    assert cli_main(["import-tf", str(tmp_path / "nothere"), str(target)]) == 1
    assert "nothere.index does not exist" in capsys.readouterr().err
