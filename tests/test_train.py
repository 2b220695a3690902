"""Training: loss goes down, exact resume, safe/clear checkpoint loading, NaN stop, Ctrl-C checkpoint."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glamor_fast.training import (CheckpointError, NonFiniteLossError, load_checkpoint, model_from_checkpoint,
                                  save_checkpoint, train)
from glamor_fast.training.data import resolve_data_root
from glamor_fast.training.seeding import seed_everything
from tests.tiny_training import tiny_config, tiny_dataset


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("builtin"))


def _fixed_batch(cfg, n=16):
    """The first n training images, eval preprocessing (no augmentation), as one batch."""
    from glamor_fast.training.data import make_dataset

    ds = make_dataset(resolve_data_root(cfg), "train", cfg, train=False)
    items = [ds[i] for i in range(n)]
    return (torch.stack([it["face"] for it in items]), torch.stack([it["context"] for it in items]),
            torch.tensor([it["label"] for it in items]))


@torch.no_grad()
def _batch_loss(model, batch):
    # Train mode = batch statistics in BatchNorm (running statistics after a few steps say little);
    # dropout is 0 in these configs, so the loss is deterministic.
    model.train()
    face, context, labels = batch
    return F.cross_entropy(model(face, context), labels).item()


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_one_epoch_lowers_the_loss(data_root, tmp_path, backend):
    from glamor_fast.models import build_model

    cfg = tiny_config(data_root, tmp_path / "run", optimizer="adamw", lr=1e-3, dropout=0.0, val_fraction=0.0,
                      backend=backend)
    batch = _fixed_batch(cfg)
    seed_everything(cfg.seed)  # the trainer builds its initial model right after this same seeding
    initial = build_model(cfg.model, num_classes=7, **cfg.model_overrides())
    before = _batch_loss(initial, batch)
    result = train(cfg)
    after = _batch_loss(result.model, batch)
    assert after < before - 0.05, (before, after)
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 2  # header + one epoch
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()


def _assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_gives_the_same_result(data_root, tmp_path):
    common = dict(epochs=2, max_batches_per_epoch=2, batch_size=4, val_fraction=0.15)
    straight = train(tiny_config(data_root, tmp_path / "straight", **common))
    train(tiny_config(data_root, tmp_path / "split", **{**common, "epochs": 1}))
    ckpt = load_checkpoint(tmp_path / "split" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step_in_epoch"] == 0
    resumed = train(tiny_config(data_root, tmp_path / "split", resume=str(tmp_path / "split" / "last.pt"), **common))
    _assert_same_weights(straight.model.state_dict(), resumed.model.state_dict())
    drop_time = lambda h: [{k: v for k, v in row.items() if k != "time_s"} for row in h]  # noqa: E731
    assert drop_time(straight.history) == drop_time(resumed.history)
    a, b = load_checkpoint(tmp_path / "split" / "last.pt"), load_checkpoint(tmp_path / "straight" / "last.pt")
    _assert_same_weights(a["model"], b["model"])
    for k in a["optimizer"]["state"]:  # SGD momentum buffers
        _assert_same_weights(a["optimizer"]["state"][k], b["optimizer"]["state"][k])
    assert a["scheduler"] == b["scheduler"]


class _Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_checkpoint_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "glamor_fast.checkpoint", "version": 1, "model": {}, "epoch": 0, "config": {},
                "class_names": [], "evil": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()
    # The payload is live: an unsafe load would have run it (so the check above can fail).
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_corrupt_and_foreign_checkpoints_give_clear_errors(data_root, tmp_path):
    result = train(tiny_config(data_root, tmp_path / "run", model="face", max_batches_per_epoch=1))
    good = (tmp_path / "run" / "last.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a glamor_fast checkpoint"):
        load_checkpoint(plain)
    # A face-only checkpoint cannot resume a GLAMOR-Net run ...
    with pytest.raises(CheckpointError, match="model: checkpoint 'face' vs now 'glamor-net'"):
        train(tiny_config(data_root, tmp_path / "other", resume=str(tmp_path / "run" / "last.pt")))
    # ... and weights that do not fit the model named in the config are reported as such.
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    ckpt["config"]["model"] = "glamor-net"
    with pytest.raises(CheckpointError, match="does not fit this model"):
        model_from_checkpoint(ckpt)
    assert result.model is not None


def test_non_finite_loss_names_the_step_and_files(data_root, tmp_path):
    def poison(progress, loss, model):
        if progress.global_step == 1:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    with pytest.raises(NonFiniteLossError) as info:
        train(tiny_config(data_root, tmp_path / "run"), on_step=poison)
    msg = str(info.value)
    assert "epoch 1, batch 2 (optimizer step 2)" in msg
    assert "train/" in msg and ".png" in msg  # the batch's image files


def test_keyboard_interrupt_saves_a_resumable_checkpoint(data_root, tmp_path, capsys):
    cfg = tiny_config(data_root, tmp_path / "run", epochs=2, batch_size=4, max_batches_per_epoch=3)

    def interrupt(progress, loss, model):
        if progress.global_step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=interrupt)
    last = tmp_path / "run" / "last.pt"
    ckpt = load_checkpoint(last)
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (0, 2, 2)
    assert "--resume" in capsys.readouterr().out
    steps, losses = [], []
    result = train(tiny_config(data_root, tmp_path / "run", epochs=2, batch_size=4, max_batches_per_epoch=3,
                               resume=str(last)),
                   on_step=lambda p, loss, m: (steps.append((p.epoch, p.batches_done)), losses.append(loss)))
    # Epoch 1 continues at its third batch; epoch 2 runs in full (3 batches).
    assert steps == [(0, 3), (1, 1), (1, 2), (1, 3)]
    # The interrupted epoch's row covers the whole epoch: the two batches before Ctrl-C and the resumed one.
    loss_sum, correct, count = ckpt["epoch_partial"]
    assert count == 8 and 0 <= correct <= 8
    row = result.history[0]
    assert row["train_samples"] == 12
    assert row["train_loss"] == pytest.approx((loss_sum + 4 * losses[0]) / 12, rel=1e-6)


def test_bf16_autocast_and_accumulation_run(data_root, tmp_path):
    steps = []
    result = train(tiny_config(data_root, tmp_path / "run", amp="bf16", accum_steps=2, max_batches_per_epoch=3,
                               batch_size=4),
                   on_step=lambda p, loss, m: steps.append(p.batches_done))
    assert steps == [2, 3]  # a step after 2 batches, then the short last group
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_fp16_needs_cuda(data_root, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is allowed")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        train(tiny_config(data_root, tmp_path / "run", amp="fp16"))


def test_bad_config_names_the_field():
    from glamor_fast.training import TrainConfig

    with pytest.raises(ValueError, match="TrainConfig.optimizer"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="TrainConfig.model"):
        TrainConfig(model="no-such-model")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": {}, "epoch": 1, "config": {}, "class_names": []})
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"model": {}, "epoch": 2, "config": {}, "class_names": []})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_cpp_and_reference_train_to_the_same_weights(data_root, tmp_path):
    """Two SGD steps of GLAMOR-Net (GLA with training-mode BatchNorm) through the fused kernel
    and through the spec: float32 rounding apart (the op's own error is ~1e-6 relative; two
    steps at lr 1e-2 keep weight differences near that times the step size)."""
    common = dict(optimizer="sgd", lr=1e-2, dropout=0.0, val_fraction=0.0, max_batches_per_epoch=2, gla_norm="batchnorm")
    fused = train(tiny_config(data_root, tmp_path / "cpp", backend="cpp", **common)).model.state_dict()
    spec = train(tiny_config(data_root, tmp_path / "ref", backend="reference", **common)).model.state_dict()
    moved = 0
    for k in spec:
        if spec[k].is_floating_point():
            torch.testing.assert_close(fused[k], spec[k], rtol=1e-4, atol=1e-5, msg=k)
            moved += int("gla" in k or "attention" in k)
    assert moved > 0, "the comparison must cover the attention's parameters"


def test_early_stop_ends_training_after_epochs_without_a_better_validation_accuracy(data_root, tmp_path):
    # lr so small that the weights (hence the validation accuracy) cannot move after the first epoch
    cfg = tiny_config(data_root, tmp_path / "run", model="face", epochs=6, early_stop=2, lr=1e-12,
                      max_batches_per_epoch=1, dropout=0.0)
    result = train(cfg)
    assert result.early_stopped and not result.stopped_early
    assert result.best_epoch == 1 and len(result.history) == 3
    assert load_checkpoint(result.last_checkpoint)["epoch"] == 3
