"""Datasets, samplers and loaders for training and evaluation.

Data order is a pure function of (seed, epoch): the train sampler is torch's
DistributedSampler (seeded permutation per epoch, sharded over ranks; one rank in a single
process), so resuming at an epoch boundary replays exactly the batches an uninterrupted run
would have seen.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler

from .config import TrainConfig
from .distributed import DistInfo, barrier

DEFAULT_BUILTIN_ROOT = "data/builtin"


def resolve_data_root(cfg: TrainConfig, info: DistInfo = DistInfo(), generate: bool = True) -> Path:
    """The dataset root for cfg; generates the built-in dataset (rank 0 only) when needed and ``generate``.

    With cfg.cache, the root is cfg.data_root if given, else the one the cache was built from.
    With ``generate=False`` (eval, visualize) an existing folder with train/ or test/ is used as
    it is, and a missing one is an error: no data is ever written into a folder nobody asked for.
    """
    if cfg.cache:
        return Path(cfg.data_root) if cfg.data_root else cache_root(cfg.cache)
    if cfg.dataset == "builtin" and not generate:
        root = Path(cfg.data_root or DEFAULT_BUILTIN_ROOT)
        if not (root / "train").is_dir() and not (root / "test").is_dir():
            raise FileNotFoundError(f"dataset folder {root} not found or holds neither train/ nor test/; pass "
                                    "--data-root (and --dataset) to say where the data is")
        return root
    if cfg.dataset == "builtin":
        from glamor_fast.data import generate_builtin

        root = Path(cfg.data_root or DEFAULT_BUILTIN_ROOT)
        params = _builtin_params(root)
        sizes = {k: v for k, v in (("num_train", cfg.builtin_train), ("num_test", cfg.builtin_test)) if v}
        # An existing built-in dataset keeps its sizes unless new ones are asked for; calling
        # generate_builtin anyway regenerates it when the generator's version has changed.
        if info.is_main:
            generate_builtin(root, **{**params, **sizes})
        barrier(info)
        return root
    if cfg.data_root is None:
        raise ValueError(f"--dataset {cfg.dataset} needs --data-root (the folder holding train/ and test/)")
    root = Path(cfg.data_root)
    if cfg.dataset == "ncaer-s" and (root / "images").is_dir():
        root = root / "images"  # the layout `glamor-fast build-ncaer` writes
    if not (root / "train").is_dir() and not (root / "test").is_dir():
        raise ValueError(f"data root {root} has neither train/ nor test/ (expected <root>/<split>/<Emotion>/*.png)")
    return root


def _builtin_params(root: Path) -> dict:
    """generate_builtin's arguments recorded in root/builtin.json ({} when there is none)."""
    try:
        stamp = json.loads((root / "builtin.json").read_text())
    except (OSError, ValueError):
        return {}
    keys = ("num_train", "num_test", "num_val", "seed", "image_size", "p_clear")
    return {k: stamp[k] for k in keys if k in stamp}


def cache_root(cache) -> Path:
    """The dataset root recorded in a cache (its first complete split's index)."""
    from glamor_fast.data.cache import StaleCacheError, load_index

    cache = Path(cache)
    splits = sorted(p.name for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if cache.is_dir() else []
    if not splits:
        raise StaleCacheError(f"--cache {cache}: no prepared split there; build it with "
                              f"`glamor-fast prepare ROOT --out {cache}`")
    return Path(load_index(cache, splits[0])["root"])


def face_visible(cfg: TrainConfig) -> bool:
    from glamor_fast.models import PRESETS

    return PRESETS[cfg.model].face_visible_in_context


def make_dataset(root: Path, split: str, cfg: TrainConfig, train: bool) -> Dataset:
    """CAERSDataset, or with cfg.cache a CachedDataset (StaleCacheError when the cache is stale)."""
    if cfg.cache:
        from glamor_fast.data.cache import CachedDataset

        return CachedDataset(cfg.cache, split, train=train, face_visible=face_visible(cfg), no_box=cfg.no_box,
                             normalize=cfg.normalize, seed=cfg.seed, root=root)
    from glamor_fast.data import CAERSDataset

    ds = CAERSDataset(root, split, train=train, face_visible=face_visible(cfg),
                      normalize=cfg.normalize, seed=cfg.seed, no_box=cfg.no_box)
    if cfg.skip_bad:
        _skip_unreadable(ds, root, split)
    return ds


def loader_workers(requested: Optional[int] = None) -> int:
    """DataLoader workers per process: ``requested``, or (None) the usable cores shared among
    this node's processes (torchrun's LOCAL_WORLD_SIZE), one left for the process itself, 1 to 8."""
    if requested is not None:
        return int(requested)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(8, cores // local - 1))


def uses_channels_last(model: torch.nn.Module) -> bool:
    """True when the model's 4-D weights are stored channels_last (its inputs should be too)."""
    weights = [p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]
    return bool(weights) and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                                 for p in weights)


def is_cached_train(ds: Dataset) -> bool:
    while isinstance(ds, Subset):
        ds = ds.dataset
    from glamor_fast.data.cache import CachedDataset

    return isinstance(ds, CachedDataset) and ds.train


class DeviceAugmentLoader:
    """A loader of cached training items whose batches are augmented on ``device`` (``augment_batch``).

    Yields {"face", "context" (float32 on device), "label", "path", "has_face"}; ``sampler`` and
    ``len`` are the wrapped loader's.
    """

    def __init__(self, loader: DataLoader, device: torch.device, normalize: bool, channels_last: bool = False):
        self.loader, self.device = loader, torch.device(device)
        self.normalize, self.channels_last = normalize, channels_last

    @property
    def sampler(self):
        return self.loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        from glamor_fast.data.gpu_augment import augment_batch

        for batch in self.loader:
            face, context = augment_batch(
                batch["face_u8"].to(self.device, non_blocking=True),
                batch["context_u8"].to(self.device, non_blocking=True), batch["aug"], batch["has_face"],
                normalize=self.normalize, channels_last=self.channels_last)
            yield {"face": face, "context": context, "label": batch["label"], "path": batch["path"],
                   "has_face": batch["has_face"]}


def _skip_unreadable(ds, root: Path, split: str) -> None:
    """--skip-bad: drop undecodable images from ``ds``, saying how many and which."""
    import logging

    dropped = ds.drop_unreadable()
    if dropped:
        examples = ", ".join(dropped[:3]) + (", ..." if len(dropped) > 3 else "")
        logging.getLogger("glamor_fast").warning(
            "skipped %d unreadable image(s) of %d in %s/%s (--skip-bad): %s",
            len(dropped), len(dropped) + len(ds), root, split, examples)
    if len(ds) == 0:
        raise ValueError(f"no readable images left in {root}/{split} after --skip-bad")


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded (train, val) index split of range(n), val = round(n * fraction) (at least 1)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise ValueError(f"val_fraction={fraction} leaves no training samples out of {n}")
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def build_datasets(root: Path, cfg: TrainConfig) -> tuple[Dataset, Dataset, str, list[str]]:
    """(train set, validation set, a description of the validation set, class names)."""
    train_full = make_dataset(root, "train", cfg, train=True)
    classes = list(train_full.classes)
    if (root / "val").is_dir():
        return train_full, make_dataset(root, "val", cfg, train=False), "val split", classes
    if cfg.val_fraction > 0:
        train_idx, val_idx = split_indices(len(train_full), cfg.val_fraction, cfg.seed)
        val_full = make_dataset(root, "train", cfg, train=False)
        desc = f"{len(val_idx)} images held out of train (val_fraction={cfg.val_fraction}, seed={cfg.seed})"
        return Subset(train_full, train_idx), Subset(val_full, val_idx), desc, classes
    # The authors' code (and most CAER-S work) selects the checkpoint on the test set.
    return train_full, make_dataset(root, "test", cfg, train=False), "test split (val_fraction=0)", classes


class SkippingSampler(Sampler):
    """Wraps a DistributedSampler; ``skip`` drops the first indices of the next epoch (mid-epoch resume)."""

    def __init__(self, inner: DistributedSampler):
        self.inner = inner
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return iter(list(self.inner)[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


class ShardSampler(Sampler):
    """Indices rank, rank + world, ... in order: every sample evaluated exactly once over all ranks."""

    def __init__(self, n: int, info: DistInfo):
        self.indices = list(range(info.rank, n, info.world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def train_loader(ds: Dataset, cfg: TrainConfig, info: DistInfo, pin_memory: bool = False,
                 device: Optional[torch.device] = None, channels_last: bool = False):
    """The training DataLoader (persistent workers); a cached dataset's is wrapped in a
    DeviceAugmentLoader that augments its batches on ``device`` (default cpu)."""
    sampler = SkippingSampler(DistributedSampler(ds, num_replicas=info.world_size, rank=info.rank,
                                                 shuffle=True, seed=cfg.seed, drop_last=False))
    workers = loader_workers(cfg.num_workers)
    # Its own generator: a persistent loader draws its worker seed only when first iterated, so
    # drawing it from the global RNG would make a resumed run's dropout differ from a straight one.
    loader = DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=pin_memory, drop_last=False, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(cfg.seed))
    if is_cached_train(ds):
        return DeviceAugmentLoader(loader, device or torch.device("cpu"), cfg.normalize, channels_last)
    return loader


def eval_loader(ds: Dataset, batch_size: int, info: DistInfo = DistInfo(), num_workers: Optional[int] = 0,
                pin_memory: bool = False, persistent: bool = False) -> DataLoader:
    """Evaluation DataLoader (num_workers None: ``loader_workers``; ``persistent`` for one reused every epoch)."""
    workers = loader_workers(num_workers)
    return DataLoader(ds, batch_size=batch_size, sampler=ShardSampler(len(ds), info),
                      num_workers=workers, pin_memory=pin_memory, persistent_workers=persistent and workers > 0,
                      generator=torch.Generator().manual_seed(0))


def dataset_classes(ds: Dataset) -> list[str]:
    while isinstance(ds, Subset):
        ds = ds.dataset
    return list(ds.classes)


def set_dataset_epoch(ds: Dataset, epoch: int) -> None:
    """Select the dataset's augmentation stream for ``epoch`` (CAERSDataset draws from [seed, epoch, index])."""
    while isinstance(ds, Subset):
        ds = ds.dataset
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)
