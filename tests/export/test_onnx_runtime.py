"""OnnxGlamorNet: the exported file through onnxruntime alone, with the PyTorch network's contract."""
import onnx
import pytest
import torch

from glamor_fast.data import EMOTIONS
from glamor_fast.export.onnx_runtime import OnnxGlamorNet


def test_contract_classes_shapes_and_empty_batch(onnx_file):
    net = OnnxGlamorNet(onnx_file, threads=1)
    assert net.classes == list(EMOTIONS)
    assert net.preprocessing["context_resize"] == [128, 171]
    logits, attn = net(torch.rand(3, 3, 96, 96), torch.rand(3, 3, 112, 112))
    assert isinstance(logits, torch.Tensor) and logits.shape == (3, 7) and logits.dtype == torch.float32
    assert attn.shape == (3, 7, 7)
    torch.testing.assert_close(attn.sum(dim=(1, 2)), torch.ones(3))
    logits, attn = net(torch.rand(0, 3, 96, 96), torch.rand(0, 3, 112, 112))
    assert logits.shape == (0, 7) and attn.shape == (0, 7, 7)


@pytest.mark.parametrize("face, context, match", [
    (torch.rand(2, 3, 96, 96, dtype=torch.float64), torch.rand(2, 3, 112, 112), "face must be a float32"),
    (torch.rand(2, 3, 96, 96), torch.rand(2, 3, 96, 96), r"context must be \(B, 3, 112, 112\)"),
    (torch.rand(2, 3, 96, 96), torch.rand(3, 3, 112, 112), "batch 2 but context has 3"),
])
def test_bad_inputs_are_named(onnx_file, face, context, match):
    with pytest.raises(ValueError, match=match):
        OnnxGlamorNet(onnx_file)(face, context)


def test_files_that_are_not_glamor_fast_exports(tmp_path, onnx_file):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="notes.onnx: not a model onnxruntime can load"):
        OnnxGlamorNet(text)
    stripped = onnx.load(str(onnx_file))
    del stripped.metadata_props[:]
    onnx.save(stripped, str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="plain.onnx: not a glamor_fast export"):
        OnnxGlamorNet(tmp_path / "plain.onnx")
    with pytest.raises(FileNotFoundError):
        OnnxGlamorNet(tmp_path / "missing.onnx")


@pytest.mark.slow  # one more export: about 10-18 s here
def test_a_model_without_attention_gives_attn_none(tmp_path):
    """The face-only preset: one output, and the contract's attn is None."""
    from glamor_fast.export import load_for_export
    from glamor_fast.export.onnx import save_onnx
    from tests.tiny_training import tiny_checkpoint

    path = tmp_path / "face.onnx"
    assert save_onnx(*load_for_export(tiny_checkpoint(tmp_path, model="face")), path)["max_abs_diff"] <= 1e-5
    net = OnnxGlamorNet(path)
    logits, attn = net(torch.rand(2, 3, 96, 96), torch.rand(2, 3, 112, 112))
    assert logits.shape == (2, 7) and attn is None and net.metadata["attention"] == "none"
    logits, attn = net(torch.rand(0, 3, 96, 96), torch.rand(0, 3, 112, 112))
    assert logits.shape == (0, 7) and attn is None
