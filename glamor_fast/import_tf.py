"""Turn the authors' TensorFlow GLAMOR-Net checkpoint into a project checkpoint.

The result is what ``glamor-fast train`` writes (glamor_fast/training/checkpoint.py): model
``glamor-net-authors``, epoch 0, a fresh optimizer and scheduler state for the config's optimizer,
so ``eval``, ``predict``, ``visualize`` and ``train --resume`` (fine-tuning) accept it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from glamor_fast.data import EMOTIONS
from glamor_fast.models.tf_weights import PRESET, load_tf_checkpoint
from glamor_fast.training import TrainConfig, save_checkpoint
from glamor_fast.training.optim import build_optimizer, build_scheduler


def import_tf(prefix: str | os.PathLike, out: str | os.PathLike, dataset: str = "builtin",
              data_root: Optional[str] = None, class_names: Sequence[str] = EMOTIONS, verify: bool = True,
              overwrite: bool = False, **config) -> Path:
    """Read the TF checkpoint ``prefix`` and write the project checkpoint ``out`` (atomically).

    ``dataset``/``data_root`` and ``config`` (other TrainConfig fields, e.g. optimizer="adamw")
    go into the stored config: eval uses that dataset unless told otherwise, and ``train
    --resume`` continues with those settings. ``class_names``: the output classes in order
    (default: CAER-S's seven, alphabetical, as the authors' data loader orders them).
    Raises TFCheckpointError/ValueError with a one-line reason; FileExistsError if ``out``
    exists and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--force) to replace it")
    model = load_tf_checkpoint(prefix, backend=config.get("backend", "auto"), verify=verify)
    num_classes = model.fusion.classifier[-1].out_features
    if len(class_names) != num_classes:
        raise ValueError(f"the checkpoint has {num_classes} classes but {len(class_names)} class names were given")
    cfg = TrainConfig(model=PRESET, dataset=dataset, data_root=data_root, **config)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    return save_checkpoint(out, {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": None, "epoch": 0, "step_in_epoch": 0, "global_step": 0, "config": cfg.to_dict(),
        "class_names": list(class_names), "best_metric": -1.0, "best_epoch": -1, "history": [],
        "data_root": data_root, "imported_from": str(Path(prefix)),
    })
