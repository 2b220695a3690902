"""load_tf_checkpoint: the authors' TF GLAMOR-Net reproduced from a checkpoint TensorFlow wrote.

expected.npz holds TF's own outputs (inference mode) for random inputs: class probabilities
and the GLA attention maps. float32 throughout, so 1e-5 leaves room for summation order only
(measured: about 2e-7 on probabilities, 5e-8 on attention).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import glamor_fast
from glamor_fast.models import KERAS_BN, PRESETS, build_model
from glamor_fast.models.tf_weights import SUFFIX, tf_name_map
from glamor_fast.tf_checkpoint import TFCheckpointError, list_variables, read_variables
from tests.test_tf_checkpoint import FIXTURE, PREFIX
from tests.tf_bundle import write_bundle


def _is_batchnorm(m: torch.nn.Module) -> bool:
    """BatchNorm layers by what they hold (an encoder may fuse BatchNorm with ReLU and pooling)."""
    return isinstance(getattr(m, "running_mean", None), torch.Tensor) and hasattr(m, "eps") and hasattr(m, "momentum")


@pytest.fixture(scope="module")
def expected():
    d = np.load(FIXTURE / "expected.npz")
    face = torch.from_numpy(d["face_nhwc"]).permute(0, 3, 1, 2).contiguous()
    context = torch.from_numpy(d["context_nhwc"]).permute(0, 3, 1, 2).contiguous()
    return face, context, d["probs"], d["attention"]


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_reproduces_tensorflows_outputs(expected, backend):
    face, context, probs, attention = expected
    model = glamor_fast.load_tf_checkpoint(PREFIX, backend=backend)
    assert not model.training and isinstance(model, glamor_fast.GLAMORNet)
    with torch.no_grad():
        logits, attn, _ = model(face, context, return_details=True)
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(attn.numpy(), attention, atol=1e-5, rtol=0)
    assert attention.max() > 1.5 / 49                      # the maps are not uniform: the test can fail


def test_the_authors_network_is_a_preset():
    kw = PRESETS["glamor-net-authors"].model_kwargs
    assert kw["gla_norm"] == "batchnorm" and kw["bn_eps"] == 1e-3 and kw["bn_momentum"] == 0.01 == KERAS_BN["bn_momentum"]
    model = build_model("glamor-net-authors")
    bns = [m for m in model.modules() if _is_batchnorm(m)]
    assert len(bns) == 11 and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)


def test_conv_biases_are_folded_into_the_running_means():
    model = glamor_fast.load_tf_checkpoint(PREFIX)
    name = "FaceEncodingNet/blocks/2"
    a = read_variables(PREFIX, [f"{name}/bn/moving_mean{SUFFIX}", f"{name}/conv/bias{SUFFIX}"])
    bias = a[f"{name}/conv/bias{SUFFIX}"]
    assert np.abs(bias).min() > 0                          # the fixture's biases are non-zero
    conv_key, bn_key = tf_name_map(model)[f"{name}/conv/kernel{SUFFIX}"][0], tf_name_map(model)[f"{name}/conv/bias{SUFFIX}"][0]
    np.testing.assert_array_equal(model.state_dict()[bn_key].numpy(), a[f"{name}/bn/moving_mean{SUFFIX}"] - bias)
    assert model.state_dict()[conv_key].shape == (128, 64, 3, 3)


def test_every_index_entry_is_mapped():
    """The authors' released Model.index has these 81 entries: 80 weights and the object graph."""
    names = tf_name_map(build_model("glamor-net-authors"))
    assert set(list_variables(PREFIX)) == set(names) | {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert len(names) == 80


@pytest.fixture(scope="module")
def weights():
    return {k: v for k, v in read_variables(PREFIX).items() if v.dtype != object}


def test_another_network_lists_missing_and_unexpected(tmp_path, weights):
    renamed = dict(weights)
    renamed[f"attention_fc9/kernel{SUFFIX}"] = renamed.pop(f"attention_fc2/kernel{SUFFIX}")
    write_bundle(tmp_path / "other", renamed)
    with pytest.raises(TFCheckpointError, match=r"other\.index is not the authors' GLAMOR-Net: variables "
                                                r"1 missing: attention_fc2/kernel; 1 unexpected: attention_fc9/kernel"):
        glamor_fast.load_tf_checkpoint(tmp_path / "other")
    fewer = {k: v for k, v in weights.items() if not k.startswith("ContextEncodingNet/")}
    write_bundle(tmp_path / "fewer", fewer)
    with pytest.raises(TFCheckpointError, match=r"30 missing: ContextEncodingNet/blocks/0/bn/beta, .* \(and 24 more\)$"):
        glamor_fast.load_tf_checkpoint(tmp_path / "fewer")


def test_a_shape_that_does_not_fit_is_named(tmp_path, weights):
    bad = dict(weights)
    bad[f"final_fc1/kernel{SUFFIX}"] = np.zeros((500, 128), np.float32)
    write_bundle(tmp_path / "bad", bad)
    with pytest.raises(TFCheckpointError, match=r"final_fc1/kernel has shape \(500, 128\), which does not fit "
                                                r"fusion\.classifier\.0\.weight \(128, 512\)"):
        glamor_fast.load_tf_checkpoint(tmp_path / "bad")
    bad = dict(weights)
    bad[f"FaceEncodingNet/blocks/1/conv/bias{SUFFIX}"] = np.zeros(3, np.float32)
    write_bundle(tmp_path / "bias", bad)
    with pytest.raises(TFCheckpointError, match=r"FaceEncodingNet/blocks/1/conv/bias has shape \(3,\)"):
        glamor_fast.load_tf_checkpoint(tmp_path / "bias")


def test_other_class_counts_follow_the_checkpoint(tmp_path, weights):
    five = dict(weights)
    five[f"final_classify/kernel{SUFFIX}"] = weights[f"final_classify/kernel{SUFFIX}"][:, :5].copy()
    five[f"final_classify/bias{SUFFIX}"] = weights[f"final_classify/bias{SUFFIX}"][:5].copy()
    write_bundle(tmp_path / "five", five)
    model = glamor_fast.load_tf_checkpoint(tmp_path / "five", backend="reference")
    assert model(torch.rand(1, 3, 96, 96), torch.rand(1, 3, 112, 112)).shape == (1, 5)


def test_bn_arguments_are_checked():
    with pytest.raises(ValueError, match="bn_momentum must be in"):
        glamor_fast.GLAMORNet(bn_momentum=0.99 * 2)
    with pytest.raises(ValueError, match="bn_eps must be a number > 0"):
        glamor_fast.GLAMORNet(bn_eps=0)
    m = glamor_fast.GLAMORNet(attention="ca", encoder="resnet18", bn_eps=1e-3, bn_momentum=0.01)
    assert {(b.eps, b.momentum) for b in m.modules() if _is_batchnorm(b)} == {(1e-3, 0.01)}


def test_keras_momentum_reaches_the_running_statistics():
    """One training step from fresh statistics: running_mean = 0.01 * batch mean (Keras momentum 0.99)."""
    model = build_model("glamor-net-authors", backend="reference").train()
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, m=m: seen.__setitem__(m, inp[0].detach()))
             for m in model.modules() if _is_batchnorm(m) and m is not model.attention.norm]
    model(torch.rand(2, 3, 96, 96), torch.rand(2, 3, 112, 112))
    for h in hooks:
        h.remove()
    assert len(seen) == 10
    for bn, x in seen.items():
        torch.testing.assert_close(bn.running_mean, 0.01 * x.mean((0, 2, 3)), rtol=1e-4, atol=1e-6)
    gla_bn = model.attention.norm
    assert int(gla_bn.num_batches_tracked) == 1 and gla_bn.momentum == 0.01
    assert gla_bn.running_mean.abs().max() > 0 and (gla_bn.running_var >= 0.99 - 1e-6).all()


def test_optimized_for_inference_reproduces_tensorflows_outputs(expected):
    """The authors' weights through optimize_for_inference (BatchNorm folded, the one-pass ReLU +
    pool and first-layer kernels, channels_last): still TensorFlow's outputs."""
    from glamor_fast.ops.relu_pool import ReLUMaxPool2d
    from glamor_fast.ops.stem_conv import Conv3x3ReLUPool2d

    face, context, probs, attention = expected
    model = glamor_fast.optimize_for_inference(glamor_fast.load_tf_checkpoint(PREFIX, backend="cpp"))
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(Conv3x3ReLUPool2d) == 2 and kinds.count(ReLUMaxPool2d) == 6
    cl = torch.channels_last
    with torch.inference_mode():
        logits, attn, _ = model(face.contiguous(memory_format=cl), context.contiguous(memory_format=cl),
                                return_details=True)
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(attn.numpy(), attention, atol=1e-5, rtol=0)
