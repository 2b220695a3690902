"""The training input pipeline: samples/s on the fly (decode + preprocess + augment per sample)
against the prepared cache (memory-mapped uint8 + batched augmentation on the device).

    python -m bench.data ROOT [--json FILE] [--make N] [--seconds 3] [--repeats 3] [--batch 32]

Both pipelines run a DataLoader with one worker process over ROOT's train split with training
augmentation, batch ``--batch``; the cached one also runs ``augment_batch`` on the device (the
CPU here; also CUDA when one is present). Repeats are interleaved (on the fly, cached, on the
fly, ...); each times whole batches for at least ``--seconds`` after a first batch that pays for
the worker's start; the figure is the median of the repeats, with min and max. The main process
runs one torch thread. ``--make N`` first writes N full-size (712x400) PNG frames per class into
ROOT/train if ROOT does not exist. The cache is built in ROOT-cache (timed once, 1 worker).
Writes {"on_the_fly": {"samples_per_s": ...}, "cached": {"samples_per_s": ...}, ...} with the machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from glamor_fast.data import CAERSDataset
from glamor_fast.data.cache import CachedDataset, cache_settings, default_cache_dir
from glamor_fast.data.cache_build import prepare_cache
from glamor_fast.data.gpu_augment import augment_batch

from .machine import machine_info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pipeline(loader: DataLoader, seconds: float, device: torch.device, cached: bool,
                  augment: bool = True) -> float:
    """samples/s over whole batches for >= ``seconds``, after one warm-up batch; cycles epochs.

    ``augment=False`` (cached only): the loader's side alone, what a worker hands to the device."""
    it, count, t0 = iter(loader), 0, None
    epoch = 0
    while True:
        try:
            batch = next(it)
        except StopIteration:
            epoch += 1
            loader.dataset.set_epoch(epoch)
            it = iter(loader)
            continue
        if cached and not augment:
            face = batch["face_u8"]
        elif cached:
            face, context = augment_batch(batch["face_u8"].to(device, non_blocking=True),
                                          batch["context_u8"].to(device, non_blocking=True),
                                          batch["aug"], batch["has_face"])
        else:
            face, context = batch["face"].to(device), batch["context"].to(device)
        _sync(device)
        if t0 is None:
            t0 = time.perf_counter()
            continue
        count += face.shape[0]
        if time.perf_counter() - t0 >= seconds:
            return count / (time.perf_counter() - t0)


def time_device_augment(ds: CachedDataset, device: torch.device, batch: int, seconds: float) -> float:
    """samples/s of ``augment_batch`` alone on ``device`` for a batch already there."""
    items = [ds[i % len(ds)] for i in range(batch)]
    args = [torch.stack([it[k] for it in items]).to(device) for k in ("face_u8", "context_u8", "aug")]
    has = torch.tensor([it["has_face"] for it in items], device=device)
    augment_batch(*args, has)
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        augment_batch(*args, has)
        n += batch
    _sync(device)
    return n / (time.perf_counter() - t0)


def _summary(values: list) -> dict:
    return {"samples_per_s": statistics.median(values), "min": min(values), "max": max(values),
            "repeats": values}


def run(root: Path, seconds: float, repeats: int, batch: int) -> dict:
    torch.set_num_threads(1)
    cache = default_cache_dir(root)
    t0 = time.perf_counter()
    prep = prepare_cache(root, cache, splits=["train"], workers=1, progress=False)["train"]
    prep_s = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fly_ds = CAERSDataset(root, "train", train=True)
        cached_ds = CachedDataset(cache, "train", train=True)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

    def loader(ds):
        return DataLoader(ds, batch_size=batch, sampler=RandomSampler(ds), num_workers=1, persistent_workers=True,
                          pin_memory=torch.cuda.is_available())

    fly_loader, cached_loader = loader(fly_ds), loader(cached_ds)
    fly, cached, loader_only = [], {d.type: [] for d in devices}, []
    for _ in range(repeats):
        fly.append(time_pipeline(fly_loader, seconds, devices[0], cached=False))
        loader_only.append(time_pipeline(cached_loader, seconds, devices[0], cached=True, augment=False))
        for d in devices:
            cached[d.type].append(time_pipeline(cached_loader, seconds, d, cached=True))
    out = {
        "on_the_fly": _summary(fly),
        "cached": _summary(cached["cpu"]),
        "cached_by_augment_device": {k: _summary(v) for k, v in cached.items()},
        "cached_loader_only": _summary(loader_only),
        "augment_only": {d.type: {"samples_per_s": time_device_augment(cached_ds, d, 256, seconds), "batch": 256}
                         for d in devices},
        "prepare": {"images": prep["entries"], "decoded": prep["decoded"], "seconds": prep_s,
                    "up_to_date": prep["up_to_date"], "workers": 1},
        "settings": {"batch": batch, "loader_workers": 1, "seconds": seconds, "repeats": repeats,
                     "train_images": len(fly_ds), "cache_settings": cache_settings()},
        "machine": machine_info(threads=1),
    }
    out["speedup"] = out["cached"]["samples_per_s"] / out["on_the_fly"]["samples_per_s"]
    return out


def report(res: dict) -> str:
    f, c = res["on_the_fly"], res["cached"]
    lines = [f"CPU {res['machine']['cpu_model']}, load average {res['machine']['load_average']}; "
             f"{res['settings']['train_images']} train images, batch {res['settings']['batch']}, 1 loader worker",
             f"on the fly: {f['samples_per_s']:.0f} samples/s (min {f['min']:.0f}, max {f['max']:.0f})"]
    for dev, r in res["cached_by_augment_device"].items():
        lines.append(f"cached, augmentation on {dev}: {r['samples_per_s']:.0f} samples/s "
                     f"(min {r['min']:.0f}, max {r['max']:.0f})")
    r = res["cached_loader_only"]
    lines.append(f"cached, the loader worker's side alone (no augmentation): {r['samples_per_s']:.0f} samples/s "
                 f"(min {r['min']:.0f}, max {r['max']:.0f})")
    for dev, r in res["augment_only"].items():
        lines.append(f"augment_batch alone on {dev}: {r['samples_per_s']:.0f} samples/s (batch {r['batch']})")
    p = res["prepare"]
    if not p["up_to_date"]:
        lines.append(f"prepare (1 worker): {p['decoded']} images in {p['seconds']:.1f} s "
                     f"({p['decoded'] / p['seconds']:.0f} images/s)")
    lines.append(f"cached / on the fly: {res['speedup']:.1f}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="CAER-S-layout dataset root (its train split is used)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--make", type=int, metavar="N", help="if ROOT does not exist, write N frames per class")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per repeat (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default %(default)s)")
    parser.add_argument("--batch", type=int, default=32, help="default %(default)s")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.exists() and args.make:
        from glamor_fast.data.sample_frames import write_frames_tree

        write_frames_tree(root, {"train": args.make})
    if not (root / "train").is_dir():
        print(f"bench.data: error: {root}/train not found (use --make N to generate a tree)", file=sys.stderr)
        return 1
    res = run(root, args.seconds, args.repeats, args.batch)
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
