"""glamor-fast predict on a real photograph (matplotlib's grace_hopper sample)."""
from __future__ import annotations

import json

import pytest
from matplotlib import cbook

from glamor_fast.cli import main as cli_main
from glamor_fast.predict import predict
from tests.tiny_training import tiny_checkpoint

GRACE = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("predict"))


def test_predict_detects_the_face_and_returns_probabilities(ckpt):
    (r,) = predict(ckpt, [GRACE], backend="cpp")
    assert r["box_source"] == "detected" and r["box"] is not None
    x1, y1, x2, y2 = r["box"]
    assert 0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 600  # grace_hopper.jpg is 512 x 600
    probs = list(r["probabilities"].values())
    assert len(probs) == 7 and sum(probs) == pytest.approx(1.0, abs=1e-5) and min(probs) >= 0
    assert r["emotion"] == max(r["probabilities"], key=r["probabilities"].get)


def test_predict_with_a_given_box_and_the_cli(ckpt, capsys):
    (r,) = predict(ckpt, [GRACE], boxes=[(150, 80, 350, 300)], backend="reference")
    assert r["box_source"] == "given" and r["box"] == [150, 80, 350, 300]
    assert cli_main(["predict", GRACE, "--checkpoint", str(ckpt), "--box", "150,80,350,300",
                     "--backend", "reference", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["probabilities"] == pytest.approx(r["probabilities"])


def test_predict_errors_are_clear(ckpt, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        predict(ckpt, [tmp_path / "missing.jpg"])
    with pytest.raises(ValueError, match="2 boxes for 1 images"):
        predict(ckpt, [GRACE], boxes=[(0, 0, 5, 5), (0, 0, 5, 5)])
