"""Precise BatchNorm: the statistics it writes are exactly those of a plain pass over the same batches."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from glamor_fast.models import KERAS_BN, GLAMORNet, build_model
from glamor_fast.training.precise_bn import (PRECISE_BN_AUTO_BATCHES, batchnorms, precise_bn_batches,
                                             recompute_bn_stats, statistics_lag)


def small_authors_net() -> nn.Module:
    """The authors' network layout (GLA hidden BatchNorm, Keras BatchNorm settings), narrow GLA."""
    return GLAMORNet(gla_hidden=16, gla_norm="batchnorm", backend="cpp", **KERAS_BN)


def batches(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(3, 3, 48, 48, generator=g), torch.rand(3, 3, 56, 56, generator=g) * (1 + i))
            for i in range(n)]


def run(model, batch):
    return model(*batch)


def train_a_little(model: nn.Module) -> None:
    """Move the running statistics and the weights away from their initial values."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for face, context in batches(3, seed=7):
        model(face, context).logsumexp(1).mean().backward()
        opt.step()
        opt.zero_grad()


def test_statistics_equal_a_plain_cumulative_pass_over_the_same_batches():
    torch.manual_seed(0)
    model = small_authors_net()
    train_a_little(model)
    model.eval()
    data = batches(4)

    # The plain pass: every BatchNorm in cumulative-average mode from reset statistics, the
    # network in training mode with its Dropout off, the same batches in the same order.
    plain = copy.deepcopy(model)
    plain.train()
    for m in plain.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    for bn in batchnorms(plain):
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        for batch in data:
            plain(*batch)

    tracked = [bn.num_batches_tracked.clone() for bn in batchnorms(model)]
    assert recompute_bn_stats(model, iter(data), 10, run) == 4  # the batches ran out before 10
    pairs = list(zip(batchnorms(model), batchnorms(plain)))
    assert len(pairs) == 11  # 2 encoders x 5 BatchNorm2d and the GLA hidden BatchNorm1d
    for (bn, ref) in pairs:
        assert torch.equal(bn.running_mean, ref.running_mean)
        assert torch.equal(bn.running_var, ref.running_var)
    # what training set is restored: modes, momentum, the step count
    assert not model.training and not any(m.training for m in model.modules())
    assert all(bn.momentum == KERAS_BN["bn_momentum"] for bn in batchnorms(model))
    assert all(torch.equal(bn.num_batches_tracked, t) for bn, t in zip(batchnorms(model), tracked))


def test_statistics_are_the_mean_of_the_batch_statistics_each_layer_saw():
    """Independent of BatchNorm's own bookkeeping: hooks record each conv BatchNorm's input."""
    torch.manual_seed(0)
    model = small_authors_net()
    train_a_little(model)
    data = batches(3)
    convs = [bn for bn in batchnorms(model) if isinstance(bn, nn.BatchNorm2d)]
    seen = {bn: [] for bn in convs}
    hooks = [bn.register_forward_pre_hook(lambda m, args: seen[m].append(args[0].detach().double()))
             for bn in convs]
    recompute_bn_stats(model, data, 3, run)
    for h in hooks:
        h.remove()
    for bn in convs:
        assert len(seen[bn]) == 3
        means = torch.stack([x.mean((0, 2, 3)) for x in seen[bn]]).mean(0)
        variances = torch.stack([x.transpose(0, 1).flatten(1).var(1, unbiased=True) for x in seen[bn]]).mean(0)
        torch.testing.assert_close(bn.running_mean.double(), means, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var.double(), variances, rtol=1e-4, atol=1e-6)


def test_no_batch_leaves_the_statistics_untouched():
    model = small_authors_net()
    train_a_little(model)
    before = copy.deepcopy(model.state_dict())
    assert recompute_bn_stats(model, [], 5, run) == 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_auto_is_on_only_where_the_momentum_makes_statistics_lag():
    assert statistics_lag(build_model("glamor-net-authors"))
    assert not statistics_lag(build_model("glamor-net"))
    assert precise_bn_batches(None, build_model("glamor-net-authors")) == PRECISE_BN_AUTO_BATCHES
    assert precise_bn_batches(None, build_model("glamor-net")) == 0
    assert precise_bn_batches(3, build_model("glamor-net")) == 3
    assert precise_bn_batches(0, build_model("glamor-net-authors")) == 0


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from tests.tiny_training import tiny_dataset

    return tiny_dataset(tmp_path_factory.mktemp("pbn") / "builtin")


def test_training_saves_the_re_estimated_statistics(data_root, tmp_path, capsys):
    from glamor_fast.training import train
    from glamor_fast.training.checkpoint import load_checkpoint
    from tests.tiny_training import tiny_config

    runs = {}
    for n in (0, None):
        cfg = tiny_config(data_root, tmp_path / f"pbn{n}", model="glamor-net-authors", max_batches_per_epoch=2,
                          precise_bn=n, num_workers=0)
        runs[n] = train(cfg)
    assert runs[0].precise_bn_batches == 0 and runs[None].precise_bn_batches == PRECISE_BN_AUTO_BATCHES
    assert "precise BatchNorm: statistics re-estimated over 64" in capsys.readouterr().out
    plain, precise = (load_checkpoint(runs[n].best_checkpoint)["model"] for n in (0, None))
    key = "face_encoder.1.running_mean"  # the first conv's BatchNorm
    # Keras's momentum moves the statistics 1% a step from zero: two steps leave them near 0; the
    # re-estimate is the batches' own mean.
    assert plain[key].abs().max() < 0.05 * precise[key].abs().max()
    assert all(torch.equal(plain[k], precise[k]) for k in plain if "running" not in k and "tracked" not in k)
