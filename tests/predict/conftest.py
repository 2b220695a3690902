import pytest

from tests.tiny_training import tiny_checkpoint


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """An untrained GLAMOR-Net checkpoint (predict needs no training)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("predict_ckpt"))


@pytest.fixture(scope="session")
def sharp_ckpt(ckpt, tmp_path_factory):
    """The same untrained model with its last layer's weights x200: probabilities that change from
    frame to frame (the untrained model's are nearly uniform)."""
    import torch

    from glamor_fast.training import save_checkpoint

    payload = torch.load(ckpt, weights_only=True)
    payload["model"]["fusion.classifier.3.weight"] *= 200.0
    return save_checkpoint(tmp_path_factory.mktemp("sharp") / "best.pt", payload)
