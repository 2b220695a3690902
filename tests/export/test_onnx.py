"""ONNX export of the fused inference network: plain ONNX, dynamic batch, same outputs as PyTorch."""
import json

import cv2
import numpy as np
import onnx
import pytest
import torch
from matplotlib import cbook

from glamor_fast.data import EMOTIONS
from glamor_fast.data.faces import HaarFaceDetector
from glamor_fast.data.transforms import preprocess
from glamor_fast.export.model import example_inputs
from glamor_fast.export.onnx_ops import translation_table, untranslated_ops
from glamor_fast.export.onnx_runtime import OnnxGlamorNet
from glamor_fast.export.pt2 import export_program

CUSTOM_OPS = {"glamor_fast::gla_forward", "glamor_fast::relu_pool", "glamor_fast::stem_conv_relu_pool"}


def _custom_ops_in(program):
    found = set()
    for module in program.graph_module.modules():
        for node in getattr(module, "graph", torch.fx.Graph()).nodes:
            if isinstance(node.target, torch._ops.OpOverload) and node.target.namespace == "glamor_fast":
                found.add(f"glamor_fast::{node.target._opname}")
    return found


def test_the_exported_network_is_the_fused_one_and_every_custom_op_has_a_translation(export_net):
    program = export_program(export_net[0])
    assert _custom_ops_in(program) == CUSTOM_OPS  # the fused kernels, not a reference swap
    assert untranslated_ops(program) == []
    assert {f"glamor_fast::{op._opname}" for op in translation_table()} == CUSTOM_OPS


def test_without_the_translations_the_export_fails(export_net):
    """What users hit before: the exporter has no ONNX function for the custom ops."""
    with pytest.raises(Exception, match="glamor_fast"):
        torch.onnx.export(export_program(export_net[0]), dynamo=True, verbose=False)


def test_onnx_file_is_plain_onnx_with_dynamic_batch_and_metadata(onnx_file):
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model)
    assert {n.domain for n in model.graph.node} <= {""} and not model.functions
    assert not {n.op_type for n in model.graph.node} & {"gla_forward", "relu_pool", "stem_conv_relu_pool"}
    assert [i.name for i in model.graph.input] == ["face", "context"]
    assert [o.name for o in model.graph.output] == ["logits", "attn"]
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["classes"]) == list(EMOTIONS)
    pre = json.loads(meta["preprocessing"])
    assert pre["face_size"] == [96, 96] and pre["context_crop"] == [112, 112] and pre["input_range"] == [0.0, 1.0]


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch_on_random_inputs(export_net, onnx_file, batch):
    net = export_net[0]
    face, context = example_inputs(batch, torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        logits, attn = net(face, context)
    got_logits, got_attn = OnnxGlamorNet(onnx_file)(face, context)
    assert logits.abs().max() > 1.0 and attn.max() > 0.2  # not the near-uniform outputs of an untrained net
    torch.testing.assert_close(got_logits, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_attn, attn, atol=1e-5, rtol=0)


def test_onnxruntime_matches_pytorch_on_a_real_photo(export_net, onnx_file):
    """matplotlib's photo of Grace Hopper, her face found and cropped as predict does."""
    image = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))), cv2.COLOR_BGR2RGB)
    faces = HaarFaceDetector(max_side=1280, min_size=40)(image)
    assert len(faces) == 1
    face, context = (torch.from_numpy(a)[None] for a in preprocess(image, faces[0].box, train=False))
    with torch.inference_mode():
        logits, attn = export_net[0](face, context)
    got_logits, got_attn = OnnxGlamorNet(onnx_file)(face, context)
    torch.testing.assert_close(got_logits, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_attn, attn, atol=1e-5, rtol=0)
    assert got_logits.argmax().item() == logits.argmax().item()


def test_gla_translation_with_the_folded_hidden_batchnorm():
    """The authors' GLA (BatchNorm on the hidden layer, folded into hidden_scale/shift in eval):
    the translation's optional-input path, against the fused op."""
    from glamor_fast import GlobalLocalAttention

    torch.manual_seed(0)
    gla = GlobalLocalAttention(6, 5, 8, norm="batchnorm", backend="cpp")
    with torch.no_grad():
        for p in gla.parameters():
            p.uniform_(-1.0, 1.0)
        for name, buf in gla.named_buffers():
            if "running_var" in name:
                buf.uniform_(0.5, 2.0)
            elif "running_mean" in name:
                buf.uniform_(-0.5, 0.5)
    gla.eval()
    face, context = torch.randn(3, 6), torch.randn(3, 5, 4, 3)
    batch = torch.export.Dim("batch", min=1, max=64)
    with torch.no_grad():
        program = torch.export.export(gla, (face, context), dynamic_shapes=({0: batch}, {0: batch}))
        want = gla(face, context)
    assert "glamor_fast::gla_forward" in _custom_ops_in(program)
    onnx_program = torch.onnx.export(program, dynamo=True, custom_translation_table=translation_table(),
                                     verbose=False)
    got = onnx_program(face, context)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)
    assert np.isclose(float(got[1].sum()), 3.0, atol=1e-5)
