"""Shared tiny settings for the training/eval/visualize/predict tests (CPU, a few seconds)."""
from __future__ import annotations

from pathlib import Path

from glamor_fast.training import TrainConfig

TINY_TRAIN, TINY_TEST = 28, 14


def tiny_dataset(root: Path) -> Path:
    """A 28 + 14 image built-in dataset (4 / 2 per class on average), generated in about a second."""
    from glamor_fast.data import generate_builtin

    return generate_builtin(root, num_train=TINY_TRAIN, num_test=TINY_TEST, seed=0)


def tiny_config(data_root: Path, out_dir: Path, **overrides) -> TrainConfig:
    """One epoch, batch 8, small GLA hidden layer, two threads, no progress bars; the fused
    "cpp" backend, so the trainer runs the kernel users get (tests pass backend="reference"
    where they compare with the spec)."""
    kw = dict(dataset="builtin", data_root=str(data_root), out_dir=str(out_dir), epochs=1, batch_size=8,
              gla_hidden=16, backend="cpp", threads=2, progress=False, val_fraction=0.15, seed=0)
    kw.update(overrides)
    return TrainConfig(**kw)


def tiny_checkpoint(tmp_root: Path, model: str = "glamor-net") -> Path:
    """An untrained ``model`` saved the way train() saves it (eval/visualize/predict need no training)."""
    from glamor_fast.data import EMOTIONS
    from glamor_fast.models import build_model
    from glamor_fast.training import save_checkpoint
    from glamor_fast.training.seeding import seed_everything

    data = tiny_dataset(tmp_root / "builtin")
    cfg = tiny_config(data, tmp_root / model, model=model)
    seed_everything(cfg.seed)
    net = build_model(cfg.model, num_classes=len(EMOTIONS), **cfg.model_overrides())
    return save_checkpoint(Path(cfg.out_dir) / "best.pt", {
        "model": net.state_dict(), "optimizer": None, "scheduler": None, "scaler": None, "epoch": 0,
        "step_in_epoch": 0, "global_step": 0, "config": cfg.to_dict(), "class_names": list(EMOTIONS),
        "best_metric": -1.0, "best_epoch": 0, "history": [], "data_root": str(data)})
