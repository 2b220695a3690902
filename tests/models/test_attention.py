"""GlobalLocalAttention and ContextAttention modules."""
import pytest
import torch
from torch import nn

from glamor_fast import ContextAttention, GlobalLocalAttention, gla_reference


def _literal_gla(module, face, context, train_bn):
    """The authors' Dense-ReLU-BN-ReLU-Dense scorer applied to every [v_f; v_ij], literally."""
    B, Dc, H, W = context.shape
    cells = context.flatten(2).transpose(1, 2)
    joined = torch.cat([face.unsqueeze(1).expand(B, H * W, -1), cells], -1).reshape(B * H * W, -1)
    bn = module.norm
    bn.train(train_bn)
    hidden = torch.relu(bn(torch.relu(module.hidden(joined))))
    attn = torch.softmax(module.score(hidden).view(B, H * W), 1)
    return torch.bmm(attn.unsqueeze(1), cells).squeeze(1), attn.view(B, H, W)


def _randomise_bn(bn):
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.1)
        bn.running_mean.uniform_(0, 1)
        bn.running_var.uniform_(0.5, 2)


def test_eval_folded_batchnorm_equals_batchnorm_layer():
    torch.manual_seed(1)
    m = GlobalLocalAttention(6, 5, 7, norm="batchnorm").double().eval()
    _randomise_bn(m.norm)
    face, context = torch.randn(3, 6).double(), torch.randn(3, 5, 2, 4).double()
    got = m(face, context)
    want = _literal_gla(m, face, context, train_bn=False)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_training_batchnorm_matches_batchnorm_layer_outputs_grads_and_running_stats():
    torch.manual_seed(2)
    m = GlobalLocalAttention(6, 5, 7, norm="batchnorm").double()
    literal = GlobalLocalAttention(6, 5, 7, norm="batchnorm").double()
    literal.load_state_dict(m.state_dict())
    face = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    context = torch.randn(3, 5, 2, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 5, dtype=torch.float64)

    def loss_of(module, fn):
        pooled, attn = fn(module)
        return (pooled * weights).sum() + (attn ** 2).sum()

    m.train()
    loss = loss_of(m, lambda mod: mod(face, context))
    grads = torch.autograd.grad(loss, [face, context, *m.parameters()])
    loss_lit = loss_of(literal, lambda mod: _literal_gla(mod, face, context, train_bn=True))
    grads_lit = torch.autograd.grad(loss_lit, [face, context, *literal.parameters()])
    torch.testing.assert_close(loss, loss_lit)
    for g, w in zip(grads, grads_lit):
        torch.testing.assert_close(g, w)
    torch.testing.assert_close(m.norm.running_mean, literal.norm.running_mean)
    torch.testing.assert_close(m.norm.running_var, literal.norm.running_var)
    assert m.norm.num_batches_tracked.item() == 1


def test_face_map_equals_its_pooled_vector():
    m = GlobalLocalAttention(4, 3, 5).double()
    face_map = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    context = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    for a, b in zip(m(face_map, context), m(face_map.mean((2, 3)), context)):
        torch.testing.assert_close(a, b)


def test_module_matches_functional_reference():
    m = GlobalLocalAttention(4, 3, 5).double()
    face, context = torch.randn(2, 4).double(), torch.randn(2, 3, 2, 3).double()
    want = gla_reference(face, context, m.hidden.weight, m.hidden.bias, m.score.weight.view(-1), m.score.bias.view(()))
    for a, b in zip(m(face, context), want):
        torch.testing.assert_close(a, b)


def test_state_dict_reads_as_linear_layers():
    keys = set(GlobalLocalAttention(4, 3, 5, norm="batchnorm").state_dict())
    assert {"hidden.weight", "hidden.bias", "score.weight", "score.bias", "norm.weight", "norm.running_mean"} <= keys


def test_follows_context_dtype_under_autocast():
    m = GlobalLocalAttention(8, 8, 4)
    face, context = torch.randn(2, 8), torch.randn(2, 8, 3, 3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, attn = m(face, context)
    assert pooled.dtype == torch.bfloat16 and attn.dtype == torch.bfloat16


@pytest.mark.parametrize("face_dtype, context_dtype", [(torch.float64, torch.float64), (torch.float32, torch.float64),
                                                       (torch.float32, torch.bfloat16)])
def test_mixed_dtypes_raise_outside_autocast_as_gla_does(face_dtype, context_dtype):
    m = GlobalLocalAttention(8, 8, 4)  # float32 parameters
    face, context = torch.randn(2, 8, dtype=face_dtype), torch.randn(2, 8, 3, 3, dtype=context_dtype)
    with pytest.raises(TypeError, match=r"GlobalLocalAttention: `face` \(torch\.float.*must share one dtype"):
        m(face, context)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [(dict(norm="layernorm"), "norm must be None or 'batchnorm'"), (dict(hidden_dim=0), "hidden_dim must be a positive int")],
)
def test_constructor_validates(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        GlobalLocalAttention(4, 3, **{"hidden_dim": 5, **kwargs})


def test_wrong_feature_sizes_raise():
    m = GlobalLocalAttention(4, 3, 5)
    with pytest.raises(ValueError, match=r"`face` must be \(B, 4\)"):
        m(torch.randn(2, 5), torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"`context` must be \(B, 3, H, W\)"):
        m(torch.randn(2, 4), torch.randn(2, 6, 2, 2))


def test_context_attention_sums_to_one_and_pools():
    m = ContextAttention(6).eval()
    context = torch.randn(2, 6, 3, 4)
    pooled, attn = m(context)
    torch.testing.assert_close(attn.sum((1, 2)), torch.ones(2))
    torch.testing.assert_close(pooled, (attn.unsqueeze(1) * context).sum((2, 3)))
    with pytest.raises(ValueError, match="ContextAttention"):
        m(torch.randn(2, 5, 3, 4))
