import pytest
import torch

from tests.tiny_training import tiny_checkpoint


@pytest.fixture(scope="session")
def export_ckpt(tmp_path_factory):
    """An untrained GLAMOR-Net checkpoint with its classifier and GLA scorer weights scaled up:
    logits of a few units and peaked attention maps, so a translation error cannot hide under
    the untrained model's near-uniform outputs."""
    from glamor_fast.training import save_checkpoint

    payload = torch.load(tiny_checkpoint(tmp_path_factory.mktemp("export_ckpt")), weights_only=True)
    payload["model"]["fusion.classifier.3.weight"] *= 200.0
    payload["model"]["attention.score.weight"] *= 2000.0  # attention maps peaking at about 0.5
    return save_checkpoint(tmp_path_factory.mktemp("sharp") / "best.pt", payload)


@pytest.fixture(scope="session")
def export_net(export_ckpt):
    """(ExportNet, metadata) of export_ckpt."""
    from glamor_fast.export import load_for_export

    return load_for_export(export_ckpt)


@pytest.fixture(scope="session")
def onnx_file(export_net, tmp_path_factory):
    """export_net written by save_onnx (verified on write)."""
    from glamor_fast.export.onnx import save_onnx

    path = tmp_path_factory.mktemp("onnx") / "glamor-net.onnx"
    save_onnx(*export_net, path)
    return path
