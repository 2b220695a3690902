"""GLAMORNet, CAERNetS, presets, encoders and fusion at the paper's input sizes."""
import itertools
from pathlib import Path

import pytest
import torch

from glamor_fast import PRESETS, AdaptiveFusion, CAERNetS, Conv5Encoder, GLAMORNet, ResNet18Encoder, build_model

FACE, CONTEXT = (3, 96, 96), (3, 112, 112)
FUSIONS = [("face", "context"), ("context",), ("face",)]


def _batch(B=2):
    return torch.rand(B, *FACE), torch.rand(B, *CONTEXT)


@pytest.mark.parametrize("encoder", ["conv5", "resnet18"])
@pytest.mark.parametrize("attention, fusion", list(itertools.product(["gla", "ca", "none"], FUSIONS)))
def test_every_configuration_trains_or_is_refused(encoder, attention, fusion):
    if fusion == ("face",) and attention != "none":
        with pytest.raises(ValueError, match="uses no context; use attention='none'"):
            GLAMORNet(encoder=encoder, attention=attention, fusion_inputs=fusion, backend="reference")
        return
    model = GLAMORNet(encoder=encoder, attention=attention, fusion_inputs=fusion, backend="reference")
    face, context = _batch()
    logits, attn, weights = model(face, context, return_details=True)
    assert logits.shape == (2, 7)
    assert weights.shape == (2, len(fusion))
    torch.testing.assert_close(weights.sum(1), torch.ones(2))
    if attention == "none":
        assert attn is None
    else:
        side = 7 if encoder == "conv5" else 4
        assert attn.shape == (2, side, side)
    logits.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


def test_encoder_output_sizes():
    assert Conv5Encoder()(torch.rand(1, *FACE)).shape == (1, 256, 6, 6)
    assert Conv5Encoder()(torch.rand(1, *CONTEXT)).shape == (1, 256, 7, 7)
    assert ResNet18Encoder()(torch.rand(1, *CONTEXT)).shape == (1, 512, 4, 4)


def test_resnet18_keys_match_torchvision():
    stored = Path(__file__).parent / "data" / "torchvision_resnet18_keys.txt"
    keys = [k for k in stored.read_text().splitlines() if k and not k.startswith("#")]
    assert list(ResNet18Encoder().state_dict()) == [k for k in keys if not k.startswith("fc.")]


def test_resnet18_loads_a_torchvision_style_checkpoint(tmp_path):
    source = ResNet18Encoder()
    state = dict(source.state_dict(), **{"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)})
    torch.save(state, tmp_path / "r18.pth")
    target = ResNet18Encoder()
    target.load_torchvision_checkpoint(tmp_path / "r18.pth")
    torch.testing.assert_close(target.conv1.weight, source.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision resnet18 checkpoint"):
        target.load_torchvision_checkpoint(tmp_path / "bad.pth")


def test_overfits_a_fixed_tiny_batch():
    torch.manual_seed(0)
    model = GLAMORNet(backend="reference", dropout=0.0)
    face, context = _batch(4)
    labels = torch.tensor([0, 3, 5, 6])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(face, context), labels)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # still train mode: BatchNorm's running stats lag after 25 steps
        logits = model(face, context)
    final = torch.nn.functional.cross_entropy(logits, labels).item()
    assert (logits.argmax(1) == labels).all()
    assert final < 0.2 * first


def test_face_only_model_needs_no_context_image():
    model = GLAMORNet(attention="none", fusion_inputs=("face",))
    assert model.context_encoder is None
    assert model(torch.rand(2, *FACE)).shape == (2, 7)


def test_context_only_gla_keeps_face_encoder_for_guidance():
    model = GLAMORNet(attention="gla", fusion_inputs=("context",))
    assert model.face_encoder is not None and model.fusion.branches == ["context"]


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(attention="self"), "attention must be one of"),
        (dict(fusion_inputs=()), "non-empty subset"),
        (dict(fusion_inputs=("face", "face")), "non-empty subset"),
        (dict(fusion_inputs=("scene",)), "non-empty subset"),
        (dict(encoder="vgg"), "unknown encoder 'vgg'"),
        (dict(gla_norm="group"), "norm must be None or 'batchnorm'"),
    ],
)
def test_constructor_validates(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        GLAMORNet(**kwargs)


def test_bad_images_raise():
    model = GLAMORNet(backend="reference")
    with pytest.raises(ValueError, match=r"`face_img` must be a \(B, 3, H, W\)"):
        model(torch.rand(2, 1, 96, 96), torch.rand(2, *CONTEXT))
    with pytest.raises(ValueError, match=r"`context_img` must be"):
        model(torch.rand(2, *FACE), None)
    with pytest.raises(ValueError, match="batch 2 but context_img has 3"):
        model(torch.rand(2, *FACE), torch.rand(3, *CONTEXT))


def test_caernet_s_uses_context_attention():
    model = CAERNetS()
    assert model.attention_kind == "ca"
    with pytest.raises(ValueError, match="fixes attention='ca'"):
        CAERNetS(attention="gla")


def test_presets_build():
    for name, preset in PRESETS.items():
        assert preset.description
        if preset.model_kwargs.get("encoder") == "resnet18":
            continue
        model = build_model(name, backend="reference")
        assert isinstance(model, GLAMORNet)
    assert PRESETS["context-visible-gla"].face_visible_in_context
    assert not PRESETS["context-masked-gla"].face_visible_in_context
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("nope")


def test_fusion_weights_and_errors():
    fusion = AdaptiveFusion(4, 6, hidden=8, num_classes=3)
    logits, weights = fusion(torch.randn(5, 4), torch.randn(5, 6))
    assert logits.shape == (5, 3)
    torch.testing.assert_close(weights.sum(1), torch.ones(5))
    with pytest.raises(ValueError, match=r"`context` must be \(B, 6\)"):
        fusion(torch.randn(5, 4), torch.randn(5, 5))
    with pytest.raises(ValueError, match="needs face_dim or context_dim"):
        AdaptiveFusion(None, None)


def test_glamornet_passes_block_backend_and_recompute_down():
    from glamor_fast.models.encoders import FusedBNReLUPool2d

    model = GLAMORNet(block_backend="reference", recompute=True)
    blocks = [m for m in model.modules() if isinstance(m, FusedBNReLUPool2d)]
    assert len(blocks) == 8 and {b.backend for b in blocks} == {"reference"}
    assert model.attention.recompute is True
    with pytest.raises(ValueError, match="bn_relu_pool: unknown backend 'fast'"):
        GLAMORNet(block_backend="fast")(torch.rand(2, 3, 96, 96), torch.rand(2, 3, 112, 112))
