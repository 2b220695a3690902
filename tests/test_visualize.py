"""glamor-fast visualize: Figure-5 attention maps and the Figure-6 prediction grid as PNGs."""
from __future__ import annotations

import numpy as np
import pytest

from glamor_fast.visualize import overlay_attention, pick_indices, visualize
from tests.tiny_training import tiny_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("vis")
    return {m: tiny_checkpoint(root, m) for m in ("glamor-net", "caernet-s", "face")}


def test_visualize_writes_both_figures(checkpoints, tmp_path):
    written = visualize([checkpoints["caernet-s"], checkpoints["glamor-net"], checkpoints["face"]],
                        tmp_path / "figs", num=3, backend="cpp")
    assert set(written) == {"attention_maps", "predictions"}
    for path in written.values():
        assert path.is_file() and path.read_bytes()[:8] == PNG


def test_attention_figure_needs_an_attention_model(checkpoints, tmp_path):
    written = visualize([checkpoints["face"]], tmp_path / "figs", num=2)
    assert set(written) == {"predictions"}  # a face-only model has no attention map to draw


def test_overlay_and_sample_choice():
    img = np.zeros((112, 112, 3), dtype=np.float32)
    attn = np.zeros((7, 7), dtype=np.float32)
    attn[0, 0] = 1.0
    out = overlay_attention(img, attn)
    assert out.shape == (112, 112, 3) and 0.0 <= out.min() and out.max() <= 1.0
    assert out[0, 0].sum() > out[-1, -1].sum() - 1e-6  # hot corner differs from the cold one
    labels = [0, 0, 1, 1, 2]
    picked = pick_indices(labels, 4, 3, seed=0)
    assert [labels[i] for i in picked] == [0, 1, 2, 0] and len(set(picked)) == 4
    with pytest.raises(ValueError):
        from glamor_fast.visualize import figure5
        figure5([], [0], "x.png")
