import pytest

from tests.tiny_training import tiny_checkpoint


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """An untrained GLAMOR-Net checkpoint (predict needs no training)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("predict_ckpt"))
