"""Loader defaults: workers from the cores, channels_last detection, the device-augmenting loader."""
import torch

from glamor_fast.data.cache_build import prepare_cache
from glamor_fast.training import TrainConfig
from glamor_fast.training.data import (DeviceAugmentLoader, build_datasets, loader_workers, resolve_data_root,
                                       train_loader, uses_channels_last)
from glamor_fast.training.distributed import DistInfo
from glamor_fast.data.sample_frames import write_frames_tree


def test_loader_workers_share_the_cores(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert loader_workers(None) == 8 and loader_workers(3) == 3 and loader_workers(0) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert loader_workers(None) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert loader_workers(None) == 1


def test_channels_last_is_detected_from_the_weights():
    from glamor_fast.models import build_model

    model = build_model("glamor-net", num_classes=7, gla_hidden=8, backend="reference")
    assert not uses_channels_last(model)
    assert uses_channels_last(model.to(memory_format=torch.channels_last))


def test_cached_train_loader_augments_batches_in_the_right_format(tmp_path):
    root = write_frames_tree(tmp_path / "caer", {"train": 1, "test": 1})
    prepare_cache(root, tmp_path / "cache", workers=1, progress=False)
    cfg = TrainConfig(dataset="caer-s", cache=str(tmp_path / "cache"), batch_size=4, val_fraction=0, num_workers=0)
    train_ds, val_ds, _, _ = build_datasets(resolve_data_root(cfg), cfg)
    loader = train_loader(train_ds, cfg, DistInfo(), channels_last=True)
    assert isinstance(loader, DeviceAugmentLoader) and len(loader) == 2
    loader.sampler.set_epoch(0)
    batch = next(iter(loader))
    assert batch["face"].shape == (4, 3, 96, 96) and batch["context"].shape == (4, 3, 112, 112)
    assert batch["context"].is_contiguous(memory_format=torch.channels_last)
    assert 0.0 <= float(batch["context"].min()) and float(batch["context"].max()) <= 1.0
    assert val_ds.split == "test" and not val_ds.train
